"""Reading a DSPy adapter's prompt back into fields.

DSPy's ChatAdapter and JSONAdapter describe the signature in the system message
(``Your input fields are: ... Your output fields are: ...``) and put the input values in
the last user message as ``[[ ## name ## ]]`` sections, followed by a line saying which
output fields to produce. The system message also says what type each output must have
(a note with a JSON schema for structured types, the allowed values of a ``Literal``);
each output field carries that type as a :class:`~ragbus.lm.schema.Schema`. This module
parses both parts; it does not know what the fields mean.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ragbus.lm.schema import ANY, Schema, schema_from_note

_FIELD_LINE = re.compile(r"^\s*\d+\.\s+`([^`]+)`\s+\((.+?)\):", re.MULTILINE)
_MARKER = re.compile(r"\[\[ ## (\w+) ## \]\]")
_CHAT_REQUEST: Final = "Respond with the corresponding output fields"
_JSON_REQUEST: Final = "Respond with a JSON object in the following order"
_REQUESTED_JSON_FIELD = re.compile(r"`(\w+)`")
_NUMBERED_ITEM = re.compile(r"^\[(\d+)\] ", re.MULTILINE)
_NOTE = re.compile(r"^\{(\w+)\}\s+# note: the value you produce (.*)$", re.MULTILINE)
_JSON_OUTPUTS_HEADING: Final = "Outputs will be a JSON object with the following fields."
_SYSTEM_MEMO: Final = 256

_QUESTION_NAMES = ("question", "query", "q")
_SKIPPED_INPUTS = frozenset({"history"})


@dataclass(frozen=True, slots=True)
class OutputField:
    """An output field the adapter asked for.

    Parameters:
        name: the field's name.
        type: its type as the prompt names it (default ``str``).
        schema: its type as a JSON schema (default: any value).
    """

    name: str
    type: str = "str"
    schema: Schema = ANY


@dataclass(frozen=True, slots=True)
class ParsedPrompt:
    """What a DSPy adapter asked for.

    Parameters:
        inputs: the input fields' rendered values from the last user message, in order.
        outputs: the output fields to produce, in the order the adapter asked for them.
        json_output: true when the adapter wants one JSON object (JSONAdapter) rather
            than ``[[ ## field ## ]]`` sections (ChatAdapter).
        input_types: each input field's type as the system message names it.
    """

    inputs: dict[str, str]
    outputs: tuple[OutputField, ...]
    json_output: bool = False
    input_types: dict[str, str] = field(default_factory=dict)

    def question_field(self) -> str | None:
        """The name of the input that holds the question: ``question``/``query`` if
        present, else the first input whose name contains ``question``, else the last
        input other than ``history``; ``None`` when there is no input."""
        names = [name for name in self.inputs if name not in _SKIPPED_INPUTS]
        for name in names:
            if name.lower() in _QUESTION_NAMES:
                return name
        for name in names:
            if "question" in name.lower():
                return name
        return names[-1] if names else None

    def question(self) -> str:
        """The question's text ("" when there is none)."""
        name = self.question_field()
        return self.inputs.get(name, "") if name else ""

    def list_input(self) -> str | None:
        """The first input declared as a list (``list[str]``, ...), or ``None``."""
        for name in self.inputs:
            if self.input_types.get(name, "").replace(" ", "").lower().startswith("list["):
                return name
        return None

    def list_items(self, name: str) -> list[str]:
        """The items of list input ``name``, every one kept (empty ones too), in order."""
        return list_items(self.inputs.get(name, ""))

    def subject(self) -> str:
        """All the text the inputs give (other than ``history``), in order: what an
        output about "the input" as a whole is about."""
        texts: list[str] = []
        for name, value in self.inputs.items():
            if name in _SKIPPED_INPUTS:
                continue
            if name == self.list_input():
                texts.extend(item for item in self.list_items(name) if item.strip())
            elif value.strip():
                texts.append(value)
        return "\n\n".join(texts)

    def passages(self) -> list[str]:
        """The passages of every input other than the question and ``history``, in order."""
        question = self.question_field()
        found: list[str] = []
        for name, value in self.inputs.items():
            if name != question and name not in _SKIPPED_INPUTS:
                found.extend(split_list_value(value))
        return found


def _section(text: str, start: str, end: str | None) -> str:
    begin = text.find(start)
    if begin < 0:
        return ""
    begin += len(start)
    stop = text.find(end, begin) if end else -1
    return text[begin:] if stop < 0 else text[begin:stop]


def parse_field_list(system: str, which: str) -> dict[str, str]:
    """The fields the system message declares, name to type.

    Parameters:
        system: the system message.
        which: ``"input"`` or ``"output"``.
    """
    if which == "input":
        block = _section(system, "Your input fields are:", "Your output fields are:")
    else:
        block = _section(system, "Your output fields are:", "All interactions will be structured")
    return {name: type_name.strip() for name, type_name in _FIELD_LINE.findall(block)}


def output_notes(system: str) -> dict[str, str]:
    """What the system message says each output's value must be, by field name (the text
    after ``the value you produce``), in the ChatAdapter's or the JSONAdapter's layout.

    Parameters:
        system: the system message.
    """
    structure = _section(system, "All interactions will be structured", None)
    heading = structure.find(_JSON_OUTPUTS_HEADING)
    if heading >= 0:
        # JSONAdapter: the placeholders are the values of a JSON object.
        start = structure.find("{", heading)
        try:
            layout, _ = json.JSONDecoder().raw_decode(structure, start)
        except (json.JSONDecodeError, ValueError):
            layout = {}
        if isinstance(layout, dict):
            structure = "\n".join(str(value) for value in layout.values())
    return {name: note for name, note in _NOTE.findall(structure)}


@dataclass(frozen=True, slots=True)
class _SystemFields:
    inputs: dict[str, str]
    outputs: dict[str, OutputField]


@functools.lru_cache(maxsize=_SYSTEM_MEMO)
def _system_fields(system: str) -> _SystemFields:
    """The fields a system message declares (memoized: one message per signature, and
    its JSON schemas are worth parsing once)."""
    notes = output_notes(system)
    outputs = {
        name: OutputField(name, type_name, Schema.of(schema_from_note(type_name, notes.get(name))))
        for name, type_name in parse_field_list(system, "output").items()
    }
    return _SystemFields(inputs=parse_field_list(system, "input"), outputs=outputs)


def parse_inputs(
    user_message: str, names: Sequence[str] | None = None
) -> tuple[dict[str, str], bool]:
    """The ``[[ ## name ## ]]`` sections of a user message, and whether it asks for JSON.

    Parameters:
        user_message: the text of the last user message.
        names: the input fields the system message declares, in order. When given, the
            sections are read in that order, each from its marker (at a line's start) up
            to the next declared field's, so a value that quotes a marker, even its own,
            stays whole. Default: every marker starts a section.
    """
    body, _, json_output = split_request(user_message)
    inputs: dict[str, str] = {}
    if names:
        found: list[tuple[str, int, int]] = []  # name, marker start, value start
        position = 0
        for name in names:
            marker = re.compile(rf"(?:^|\n)\[\[ ## {re.escape(name)} ## \]\]", re.MULTILINE)
            match = marker.search(body, position)
            if match:
                found.append((name, match.start(), match.end()))
                position = match.end()
        for index, (name, _, value_start) in enumerate(found):
            value_end = found[index + 1][1] if index + 1 < len(found) else len(body)
            inputs[name] = body[value_start:value_end].strip()
        return inputs, json_output
    pieces = _MARKER.split(body)
    for index in range(1, len(pieces) - 1, 2):
        inputs[pieces[index]] = pieces[index + 1].strip()
    return inputs, json_output


def split_request(user_message: str) -> tuple[str, str, bool]:
    """A user message cut into its inputs and the adapter's closing request ("Respond
    with ..."), and whether that request asks for JSON.

    The request is the last one in the message: an input value may quote the phrase.

    Parameters:
        user_message: the text of the last user message.
    """
    chat = user_message.rfind(_CHAT_REQUEST)
    json_request = user_message.rfind(_JSON_REQUEST)
    start = max(chat, json_request)
    if start < 0:
        return user_message, "", False
    return user_message[:start].rstrip("\n"), user_message[start:], json_request > chat


def requested_outputs(user_message: str) -> list[str]:
    """The output field names the last user message asks for, in order (may be empty)."""
    _, request, json_output = split_request(user_message)
    if json_output:
        return _REQUESTED_JSON_FIELD.findall(request)
    return [name for name in _MARKER.findall(request) if name != "completed"]


def split_list_value(value: str) -> list[str]:
    """The items of a rendered list input.

    DSPy renders ``list[str]`` values as a JSON array, and a list given to a ``str``
    field as ``[1] «item»`` lines (``«««`` blocks for multi-line items). Any other
    value is one item. Empty items are dropped.

    Parameters:
        value: the rendered value.
    """
    text = value.strip()
    if not text or text == "N/A":
        return []
    if text.startswith("["):
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError:
            decoded = None
        if isinstance(decoded, list):
            return [str(item).strip() for item in decoded if str(item).strip()]
    if _NUMBERED_ITEM.match(text):
        items = [item for item in _NUMBERED_ITEM.split(text)[2::2]]
        return [item for item in (_unquote(item) for item in items) if item]
    return [_unquote(text)] if _unquote(text) else []


def list_items(value: str) -> list[str]:
    """Every item of a rendered ``list[...]`` input, empty ones included, in order.

    DSPy renders a list value as a JSON array; an item that is not a string comes back as
    its JSON text. A value that is no JSON array is read like :func:`split_list_value`.

    Parameters:
        value: the rendered value.
    """
    text = value.strip()
    if text.startswith("["):
        try:
            decoded: Any = json.loads(text)
        except json.JSONDecodeError:
            decoded = None
        if isinstance(decoded, list):
            return [
                item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
                for item in decoded
            ]
    return split_list_value(value)


def _unquote(item: str) -> str:
    item = item.strip()
    if item.startswith("«««") and item.endswith("»»»"):
        lines = item[3:-3].strip("\n").split("\n")
        return "\n".join(line.removeprefix("    ") for line in lines).strip()
    if item.startswith("«") and item.endswith("»"):
        return item[1:-1].strip()
    return item


def parse_prompt(system: str, user_message: str) -> ParsedPrompt:
    """Parse a DSPy adapter prompt.

    The output fields are those the user message asks for; when it names none, those
    the system message declares; when neither does, a single ``answer``. Each has the
    type the system message gives it (a ``str`` when it gives none).

    Parameters:
        system: the system message ("" when there is none).
        user_message: the text of the last user message.
    """
    declared = _system_fields(system)
    inputs, json_output = parse_inputs(user_message, tuple(declared.inputs))
    names = requested_outputs(user_message) or list(declared.outputs) or ["answer"]
    outputs = tuple(declared.outputs.get(name) or OutputField(name) for name in names)
    return ParsedPrompt(
        inputs=inputs,
        outputs=outputs,
        json_output=json_output,
        input_types=dict(declared.inputs),
    )
