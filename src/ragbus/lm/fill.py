"""Choosing the offline LM's value for each output field, from the field's name and type.

Two readers answer, and the field decides which:

- the text analysis (:func:`ragbus.lm.analysis.analyse`) answers fields that ask for a
  reading of the input: a field (or an object property) named like ``sentiment`` (a
  label, or a number), ``score``, ``topics``/``keywords`` or ``entities``, whose type
  fits; an object with such properties; and a list of such objects (or of such values,
  ``sentiments: list[...]``), which gets one item per item of the first ``list[...]``
  input, in order (``texts: list[str] -> analyses: list[TextAnalysis]``) or a single item
  about the whole input when there is no list input;
- the extractive reader (:func:`ragbus.lm.extract.extract`) answers every other field as
  before: the question's best context sentences, a ``bool`` for whether there are any, a
  list of them, and ``reasoning``/``rationale`` saying where they come from.

Values respect their JSON schema: an ``enum`` gets one of its own values (``pos`` for
``positive`` when that is how it spells it), ``maxItems``/``maxLength`` cut lists and
strings, a number keeps within ``minimum``/``maximum`` (a score asked for on 0 .. 1 is
rescaled), and a required property neither reader knows gets a neutral value of its type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ragbus.lm.analysis import Analysis, analyse
from ragbus.lm.compose import analysis_reasoning, answer_text, reasoning_text
from ragbus.lm.entities import FoundEntity
from ragbus.lm.extract import Extraction, extract
from ragbus.lm.prompt import OutputField, ParsedPrompt
from ragbus.lm.schema import Schema

# The readings the text analysis gives, by the names fields commonly use for them.
_ROLES: Final[dict[str, str]] = {
    "sentiment": "sentiment",
    "sentiment_label": "sentiment",
    "tone": "sentiment",
    "polarity": "sentiment",
    "score": "score",
    "sentiment_score": "score",
    "polarity_score": "score",
    "valence": "score",
    "topics": "topics",
    "keywords": "topics",
    "key_topics": "topics",
    "key_phrases": "topics",
    "keyphrases": "topics",
    "themes": "topics",
    "tags": "topics",
    "entities": "entities",
    "named_entities": "entities",
}
_ROLE_ORDER: Final = ("sentiment", "score", "topics", "entities")
_REASONING_FIELDS: Final = frozenset({"reasoning", "rationale"})
_ENTITY_TEXT_NAMES: Final = ("text", "name", "entity", "value", "span", "mention")
_ENTITY_TYPE_NAMES: Final = ("type", "label", "kind", "category", "entity_type")
_ENTITY_OFFSET_NAMES: Final = ("start", "end")
_ENTITY_TYPE_SPELLINGS: Final[dict[str, tuple[str, ...]]] = {
    "person": ("person", "per", "people", "human", "individual"),
    "organization": ("organization", "organisation", "org", "company", "institution"),
    "place": ("place", "location", "loc", "gpe", "geo"),
    "date": ("date", "time", "datetime"),
    "number": ("number", "quantity", "cardinal", "num", "numeric"),
    "other": ("other", "misc", "miscellaneous", "unknown"),
}
_NEUTRAL_CHOICES: Final = ("other", "unknown", "none", "neutral", "n/a")
# Deep enough for any sensible output type; stops a recursive schema (a tree of nodes).
_MAX_DEPTH: Final = 6

_NOT_FOUND: Final = object()


def _singular(name: str) -> str:
    lowered = name.lower()
    if lowered.endswith("ies"):
        return lowered[:-3] + "y"
    return lowered.removesuffix("s")


def _sentiment_choice(label: str, score: float, choices: tuple[Any, ...]) -> Any:
    """The value of an ``enum`` that spells ``label`` (``POSITIVE``, ``pos``), falling
    back from ``mixed`` to the score's side and then to neutral; ``_NOT_FOUND`` if none."""
    side = "positive" if score > 0 else "negative" if score < 0 else "neutral"
    for wanted in (label, side, "neutral"):
        for choice in choices:
            spelled = str(choice).casefold()
            if spelled == wanted or (len(spelled) >= 3 and wanted.startswith(spelled)):
                return choice
    return _NOT_FOUND


def _role(name: str, schema: Schema) -> str | None:
    """The reading field ``name`` of type ``schema`` asks for, if its type can hold it."""
    role = _ROLES.get(name.lower())
    kind = schema.kind
    if role == "sentiment":
        if kind in ("number", "integer"):
            return "score"
        if kind in ("string", "any"):
            choices = schema.choices
            if not choices or all(
                _sentiment_choice(wanted, 0.0, choices) is not _NOT_FOUND
                for wanted in ("positive", "negative")
            ):
                return role
        return None
    if role == "score":
        return role if kind in ("number", "integer", "string", "any") else None
    if role in ("topics", "entities"):
        return role if kind in ("array", "string", "any") else None
    return None


def is_analysable(name: str, schema: Schema, depth: int = 0) -> bool:
    """Whether the text analysis answers a field (or property) ``name`` of type ``schema``.

    Parameters:
        name: the field's name.
        schema: its type.
        depth: how deep in an output type this field sits (default 0, the top).
    """
    if depth > _MAX_DEPTH:
        return False
    if _role(name, schema):
        return True
    if schema.kind == "object":
        return any(
            is_analysable(prop, prop_schema, depth + 1)
            for prop, prop_schema in schema.properties.items()
        )
    if schema.kind == "array":
        items = schema.items
        return _role(_singular(name), items) is not None or (
            items.kind == "object" and is_analysable("", items, depth + 1)
        )
    return False


def _clip_text(text: str, schema: Schema) -> str:
    longest = schema.limit("maxLength")
    return text if longest is None else text[: int(longest)]


def _clip_list(values: list[Any], schema: Schema) -> list[Any]:
    most = schema.limit("maxItems")
    return values if most is None else values[: int(most)]


def _number(value: float, schema: Schema) -> float | int:
    """``value`` within the schema's ``minimum``/``maximum`` (an integer if it asks)."""
    low, high = schema.limit("minimum"), schema.limit("maximum")
    if low is not None and high is not None and low >= 0 and high > low and -1 <= value <= 1:
        # A score asked for on a non-negative scale (0 .. 1, 1 .. 5): rescale -1 .. 1 onto it.
        value = low + (value + 1) / 2 * (high - low)
    if low is not None:
        value = max(value, low)
    if high is not None:
        value = min(value, high)
    return round(value) if schema.kind == "integer" else round(value, 3)


def _entity_type(entity: FoundEntity, schema: Schema) -> Any:
    """The entity's type as the schema spells it; ``_NOT_FOUND`` when it cannot."""
    choices = schema.choices
    if not choices:
        return entity.type
    for wanted in (entity.type, "other"):
        spellings = _ENTITY_TYPE_SPELLINGS[wanted]
        for choice in choices:
            if str(choice).casefold() in spellings:
                return choice
    return _NOT_FOUND


def _entity_value(entity: FoundEntity, schema: Schema, subject: str, depth: int) -> Any:
    """One entity in the shape the schema asks for (``_NOT_FOUND`` if it cannot hold it)."""
    kind = schema.kind
    if kind in ("string", "any"):
        return _clip_text(entity.text, schema)
    if kind != "object":
        return _NOT_FOUND
    value: dict[str, Any] = {}
    # The entity's own properties first: its text, its type, where it is.
    properties = sorted(schema.properties.items(), key=lambda item: _entity_rank(item[0]))
    for prop, prop_schema in properties:
        lowered = prop.lower()
        if lowered in _ENTITY_TEXT_NAMES and prop_schema.kind in ("string", "any"):
            value[prop] = _clip_text(entity.text, prop_schema)
        elif lowered in _ENTITY_TYPE_NAMES and prop_schema.kind in ("string", "any"):
            spelled = _entity_type(entity, prop_schema)
            if spelled is _NOT_FOUND:
                return _NOT_FOUND
            value[prop] = spelled
        elif lowered in _ENTITY_OFFSET_NAMES and prop_schema.kind in ("integer", "number"):
            value[prop] = entity.start if lowered == "start" else entity.end
        elif prop in schema.required:
            value[prop] = _neutral(prop_schema, subject, depth + 1)
    return value


def _entity_rank(name: str) -> int:
    lowered = name.lower()
    for rank, names in enumerate((_ENTITY_TEXT_NAMES, _ENTITY_TYPE_NAMES, _ENTITY_OFFSET_NAMES)):
        if lowered in names:
            return rank
    return 3


def _role_value(role: str, schema: Schema, analysis: Analysis, subject: str, depth: int) -> Any:
    kind = schema.kind
    sentiment = analysis.sentiment
    if role == "sentiment":
        if schema.choices:
            return _sentiment_choice(sentiment.label, sentiment.score, schema.choices)
        return sentiment.label
    if role == "score":
        if kind in ("string", "any"):
            return str(sentiment.score)
        return _number(sentiment.score, schema)
    if role == "topics":
        if kind == "string":
            return _clip_text(", ".join(analysis.topics), schema)
        items = schema.items
        return _clip_list([_clip_text(topic, items) for topic in analysis.topics], schema)
    # entities
    if kind == "string":
        listed = "; ".join(f"{entity.text} ({entity.type})" for entity in analysis.entities)
        return _clip_text(listed, schema)
    items = schema.items
    values = [_entity_value(entity, items, subject, depth + 1) for entity in analysis.entities]
    return _clip_list([value for value in values if value is not _NOT_FOUND], schema)


def _neutral(schema: Schema, subject: str, depth: int) -> Any:
    """A value of type ``schema`` that claims nothing: for a required property that no
    reader knows (the input's text for a string, 0, false, an empty list)."""
    choices = schema.choices
    if choices:
        for choice in choices:
            if str(choice).casefold() in _NEUTRAL_CHOICES:
                return choice
        return choices[0]
    kind = schema.kind
    if kind == "object":
        return {
            prop: _neutral(prop_schema, subject, depth + 1)
            for prop, prop_schema in schema.properties.items()
            if prop in schema.required and depth < _MAX_DEPTH
        }
    if kind == "array":
        return []
    if kind in ("number", "integer"):
        return _number(0.0, schema)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _clip_text(subject, schema)


class FieldFiller:
    """The value of each output field of one prompt.

    The extraction and the analyses are computed on first use, once each: a RAG prompt
    never analyses, an analysis prompt never extracts.

    Parameters:
        prompt: the parsed prompt.
        analyser: the text analysis (default :func:`ragbus.lm.analysis.analyse`).
    """

    def __init__(self, prompt: ParsedPrompt, analyser: Callable[[str], Analysis] = analyse) -> None:
        self.prompt = prompt
        self._analyser = analyser
        self._extraction: Extraction | None = None
        #: The analyses made so far, by text, in order.
        self.analyses: dict[str, Analysis] = {}

    @property
    def extraction(self) -> Extraction | None:
        """The extraction, if a field needed one."""
        return self._extraction

    def _extract(self) -> Extraction:
        if self._extraction is None:
            self._extraction = extract(self.prompt.question(), self.prompt.passages())
        return self._extraction

    def _analyse(self, text: str) -> Analysis:
        analysis = self.analyses.get(text)
        if analysis is None:
            analysis = self._analyser(text)
            self.analyses[text] = analysis
        return analysis

    def values(self) -> dict[str, Any]:
        """Every output field's value, in the order the prompt asks for them."""
        outputs = self.prompt.outputs
        # Reasoning last: it says how the other fields were answered.
        answers = {
            output.name: self._value(output)
            for output in outputs
            if output.name.lower() not in _REASONING_FIELDS
        }
        for output in outputs:
            if output.name.lower() in _REASONING_FIELDS:
                if self.analyses:
                    answers[output.name] = analysis_reasoning(list(self.analyses.values()))
                else:
                    answers[output.name] = reasoning_text(self._extract())
        return {output.name: answers[output.name] for output in outputs}

    def _value(self, output: OutputField) -> Any:
        if is_analysable(output.name, output.schema):
            list_input = self.prompt.list_input()
            items = self.prompt.list_items(list_input) if list_input else None
            return self._analysis_value(output.name, output.schema, self.prompt.subject(), items)
        extraction = self._extract()
        kind = output.schema.kind
        if kind == "boolean":
            return extraction.found
        if kind == "array":
            return [sentence.text for sentence in extraction.sentences]
        return answer_text(extraction)

    def _analysis_value(
        self, name: str, schema: Schema, subject: str, items: list[str] | None, depth: int = 0
    ) -> Any:
        """The value of an analysable field about ``subject``; a list type gets one item
        per entry of ``items`` when given (else one item about ``subject``)."""
        role = _role(name, schema)
        if role:
            return _role_value(role, schema, self._analyse(subject), subject, depth)
        if schema.kind == "object":
            return self._object_value(schema, subject, depth)
        item_name = _singular(name)
        return _clip_list(
            [
                self._analysis_value(item_name, schema.items, text, None, depth + 1)
                for text in (items if items is not None else [subject])
            ],
            schema,
        )

    def _object_value(self, schema: Schema, subject: str, depth: int) -> dict[str, Any]:
        properties = schema.properties
        known = {
            prop: prop_schema
            for prop, prop_schema in properties.items()
            if is_analysable(prop, prop_schema, depth + 1)
        }
        value: dict[str, Any] = {}
        # The readings first, in their usual order (sentiment, score, topics, entities).
        for prop in sorted(known, key=lambda prop: _rank(prop, known[prop])):
            value[prop] = self._analysis_value(prop, known[prop], subject, None, depth + 1)
        for prop, prop_schema in properties.items():
            if prop not in known and prop in schema.required:
                value[prop] = _neutral(prop_schema, subject, depth + 1)
        return value


def _rank(name: str, schema: Schema) -> int:
    role = _role(name, schema)
    return _ROLE_ORDER.index(role) if role else len(_ROLE_ORDER)
