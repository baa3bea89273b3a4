"""The type of an output field, as a JSON schema read from the adapter's prompt.

DSPy's adapters describe each output field's type in the system message: a note after
the field's placeholder (``{score}  # note: the value you produce must be a single float
value``, ``... must adhere to the JSON schema: {...}``), or only the type's name for
``str``. :func:`schema_from_note` turns either into a JSON schema; :class:`Schema` walks
one (following ``$ref`` into ``$defs`` and taking the non-null branch of an optional).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

_JSON_SCHEMA_NOTE: Final = "must adhere to the JSON schema:"
_CHOICE_NOTE: Final = re.compile(
    r"must (?:exactly match \(no extra characters\) one of|be one of): (.*)", re.DOTALL
)
_SINGLE_NOTE: Final = re.compile(r"must be a single (int|float) value")
_BOOL_NOTE: Final = "must be True or False"
_NAMED_TYPES: Final[dict[str, dict[str, Any]]] = {
    "str": {"type": "string"},
    "bool": {"type": "boolean"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "list[str]": {"type": "array", "items": {"type": "string"}},
}


def schema_from_note(type_name: str, note: str | None) -> dict[str, Any]:
    """The JSON schema of an output field.

    Parameters:
        type_name: the field's type as the system message names it (``str``,
            ``list[Entity]``, ...).
        note: what the adapter says the value must be (the text after ``the value you
            produce``), or ``None`` when it says nothing.
    """
    if note:
        note = note.strip()
        if note.startswith(_JSON_SCHEMA_NOTE):
            try:
                decoded = json.loads(note[len(_JSON_SCHEMA_NOTE) :])
            except json.JSONDecodeError:
                decoded = None
            if isinstance(decoded, dict):
                return decoded
        choice = _CHOICE_NOTE.fullmatch(note)
        if choice:
            return {"type": "string", "enum": choice.group(1).split("; ")}
        single = _SINGLE_NOTE.fullmatch(note)
        if single:
            return {"type": "integer" if single.group(1) == "int" else "number"}
        if note == _BOOL_NOTE:
            return {"type": "boolean"}
    return dict(_NAMED_TYPES.get(type_name.replace(" ", ""), {}))


@dataclass(frozen=True, slots=True, eq=False)
class Schema:
    """One node of a JSON schema, with the document it belongs to (for ``$ref``).

    Build it with :meth:`of`, which resolves references and optionals, so ``node`` is
    always a concrete schema. Schemas compare and hash by identity (their nodes are
    dicts), so what is compiled from one can be memoized per schema object.

    Parameters:
        node: the schema of this value.
        root: the whole schema document (where ``$defs`` live).
    """

    node: Mapping[str, Any]
    root: Mapping[str, Any]

    @classmethod
    def of(cls, node: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Schema:
        """The schema ``node`` of document ``root`` (``node`` itself when omitted), with
        ``$ref`` followed and ``anyOf``/``oneOf``/``allOf`` narrowed to their first
        non-null branch."""
        document = node if root is None else root
        seen: set[str] = set()
        while True:
            reference = node.get("$ref")
            if isinstance(reference, str) and reference not in seen:
                seen.add(reference)
                node = _follow(document, reference)
                continue
            branches = node.get("anyOf") or node.get("oneOf") or node.get("allOf")
            if isinstance(branches, list):
                concrete = [b for b in branches if isinstance(b, dict) and b.get("type") != "null"]
                if concrete:
                    node = concrete[0]
                    continue
            return cls(node, document)

    @property
    def kind(self) -> str:
        """The JSON type: ``string``, ``number``, ``integer``, ``boolean``, ``array``,
        ``object``, ``null``, or ``any`` when the schema does not say."""
        declared = self.node.get("type")
        if isinstance(declared, list):
            declared = next((t for t in declared if t != "null"), None)
        if isinstance(declared, str):
            return declared
        if "enum" in self.node:
            return "string"
        if "properties" in self.node:
            return "object"
        if "items" in self.node:
            return "array"
        return "any"

    @property
    def choices(self) -> tuple[Any, ...]:
        """The values an ``enum`` (or ``const``) allows; empty when any value goes."""
        if "const" in self.node:
            return (self.node["const"],)
        values = self.node.get("enum")
        return tuple(values) if isinstance(values, list) else ()

    @property
    def items(self) -> Schema:
        """The schema of an array's items (``any`` when it does not say)."""
        items = self.node.get("items")
        return Schema.of(items if isinstance(items, dict) else {}, self.root)

    @property
    def properties(self) -> dict[str, Schema]:
        """An object's declared properties, in declaration order."""
        declared = self.node.get("properties")
        if not isinstance(declared, dict):
            return {}
        return {
            name: Schema.of(value if isinstance(value, dict) else {}, self.root)
            for name, value in declared.items()
        }

    @property
    def required(self) -> frozenset[str]:
        """The properties an object must have."""
        required = self.node.get("required")
        return frozenset(required) if isinstance(required, list) else frozenset()

    def limit(self, keyword: str) -> float | None:
        """A numeric constraint such as ``maxItems`` or ``maximum`` (``None`` if absent)."""
        value = self.node.get(keyword)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        return None


#: The schema of a value of any type (what an output field without a declared type has).
ANY: Final = Schema.of({})


def _follow(root: Mapping[str, Any], reference: str) -> Mapping[str, Any]:
    """The node ``reference`` (``#/$defs/Name``) points to in ``root`` (``{}`` if none)."""
    node: Any = root
    for part in reference.removeprefix("#").strip("/").split("/"):
        if not part:
            continue
        node = (
            node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
        )
    return node if isinstance(node, dict) else {}
