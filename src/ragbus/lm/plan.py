"""How the text analysis fills an output field: a plan compiled once from the field's name
and JSON schema.

A field is a *reading* of the input when its name says which one and its type can hold
it: ``sentiment``/``tone``/``polarity`` (a label, or a number), ``score``/
``sentiment_score``/``valence``, ``topics``/``keywords``/``tags``/``themes``,
``entities``/``named_entities``. An object is filled when some of its properties are
readings; a list is filled with one item per text when its items are (an object with
readings, or ``sentiments: list[...]``, whose singular names a reading). Anything else
has no plan (:func:`compile_plan` returns ``None``) and is left to the extractive reader.

Values respect the schema: an ``enum`` gets one of its own values (``pos`` or
``POSITIVE`` for ``positive``; for ``mixed`` when the enum has no such value, the
score's side), ``maxItems``/``maxLength`` cut lists and strings, a number keeps within
``minimum``/``maximum`` (a score asked for on a non-negative scale such as 0 .. 1 is
rescaled onto it), an entity type is spelled the schema's way (``PER``, ``LOC``,
``MISC``; an entity whose type it cannot spell is left out), and a required property
that is no reading gets a neutral value of its type (the text itself for a string, 0,
false, an empty list, an enum's ``other``/``unknown``/``neutral``).

Plans are compiled per schema object and memoized: a batch of texts reuses one plan, so
the per-text cost is the analysis itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ragbus.lm.analysis import Analysis
from ragbus.lm.entities import EntityType, FoundEntity
from ragbus.lm.schema import Schema
from ragbus.lm.sentiment import SentimentLabel

# The readings the text analysis gives, by the names fields commonly use for them.
_READINGS: Final[dict[str, str]] = {
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
_READING_ORDER: Final = ("sentiment", "score", "topics", "entities")
_SENTIMENT_LABELS: Final[tuple[SentimentLabel, ...]] = ("positive", "negative", "neutral", "mixed")
_ENTITY_TEXT_NAMES: Final = frozenset({"text", "name", "entity", "value", "span", "mention"})
_ENTITY_TYPE_NAMES: Final = frozenset({"type", "label", "kind", "category", "entity_type"})
_ENTITY_OFFSET_NAMES: Final = ("start", "end")
_ENTITY_TYPE_SPELLINGS: Final[dict[EntityType, frozenset[str]]] = {
    "person": frozenset({"person", "per", "people", "human", "individual"}),
    "organization": frozenset({"organization", "organisation", "org", "company", "institution"}),
    "place": frozenset({"place", "location", "loc", "gpe", "geo"}),
    "date": frozenset({"date", "time", "datetime"}),
    "number": frozenset({"number", "quantity", "cardinal", "num", "numeric"}),
    "other": frozenset({"other", "misc", "miscellaneous", "unknown"}),
}
_NEUTRAL_CHOICES: Final = ("other", "unknown", "none", "neutral", "n/a")
_TEXT_KINDS: Final = frozenset({"string", "any"})
_NUMBER_KINDS: Final = frozenset({"number", "integer"})
# Deep enough for any sensible output type; stops a recursive schema (a tree of nodes).
_MAX_DEPTH: Final = 6
_PLAN_MEMO: Final = 1024

Analyser = Callable[[str], Analysis]


class Plan(Protocol):
    """How to fill one value from the analysis of its text."""

    def fill(self, analyser: Analyser, subject: str, items: list[str] | None) -> Any:
        """The value about ``subject``; a list gets one item per entry of ``items`` when
        given (else one item about ``subject``)."""
        ...  # pragma: no cover


# --- small helpers ---------------------------------------------------------------------


def _singular(name: str) -> str:
    lowered = name.lower()
    if lowered.endswith("ies"):
        return lowered[:-3] + "y"
    return lowered.removesuffix("s")


def _spelling(choices: tuple[Any, ...], wanted: str, spellings: frozenset[str]) -> Any | None:
    """The choice that spells ``wanted``: one of ``spellings`` or, for three letters or
    more, its abbreviation (``pos``, ``NEG``); ``None`` when there is none."""
    for choice in choices:
        spelled = str(choice).casefold()
        if spelled in spellings or (len(spelled) >= 3 and wanted.startswith(spelled)):
            return choice
    return None


def _clip_text(text: str, longest: int | None) -> str:
    return text if longest is None else text[:longest]


def _limit(schema: Schema, keyword: str) -> int | None:
    value = schema.limit(keyword)
    return None if value is None else int(value)


def _neutral(schema: Schema, depth: int = 0) -> Callable[[str], Any]:
    """A maker of a value of type ``schema`` that claims nothing, for a required property
    no reading answers: the text for a string, 0, false, an empty list, a neutral choice."""
    choices = schema.choices
    if choices:
        chosen = next((c for c in choices if str(c).casefold() in _NEUTRAL_CHOICES), choices[0])
        return lambda subject: chosen
    kind = schema.kind
    if kind == "object" and depth < _MAX_DEPTH:
        parts = [
            (prop, _neutral(prop_schema, depth + 1))
            for prop, prop_schema in schema.properties.items()
            if prop in schema.required
        ]
        return lambda subject: {prop: make(subject) for prop, make in parts}
    if kind in _NUMBER_KINDS:
        zero = _Number.of(schema).value(0.0)
        return lambda subject: zero
    constants: dict[str, Any] = {"array": [], "boolean": False, "null": None, "object": {}}
    if kind in constants:
        constant = constants[kind]
        return lambda subject: constant.copy() if isinstance(constant, list | dict) else constant
    longest = _limit(schema, "maxLength")
    return lambda subject: _clip_text(subject, longest)


@dataclass(frozen=True, slots=True)
class _Number:
    """A number within a schema's range: clipped, or a -1 .. 1 score rescaled onto a
    non-negative scale; an integer when the schema asks for one."""

    low: float | None
    high: float | None
    integer: bool

    @classmethod
    def of(cls, schema: Schema) -> _Number:
        return cls(schema.limit("minimum"), schema.limit("maximum"), schema.kind == "integer")

    def value(self, score: float) -> float | int:
        low, high = self.low, self.high
        if low is not None and high is not None and 0 <= low < high:
            score = low + (score + 1) / 2 * (high - low)
        if low is not None:
            score = max(score, low)
        if high is not None:
            score = min(score, high)
        return round(score) if self.integer else round(score, 3)


# --- readings --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SentimentLabelPlan:
    """The sentiment label, spelled the schema's way."""

    spelled: dict[SentimentLabel, Any]

    @classmethod
    def compile(cls, schema: Schema) -> _SentimentLabelPlan | None:
        choices = schema.choices
        if not choices:
            return cls({label: label for label in _SENTIMENT_LABELS})
        spelled: dict[SentimentLabel, Any] = {}
        for label in _SENTIMENT_LABELS:
            choice = _spelling(choices, label, frozenset({label}))
            if choice is not None:
                spelled[label] = choice
        if "positive" not in spelled or "negative" not in spelled:
            return None  # an enum of something else (spam/ham)
        return cls(spelled)

    def fill(self, analyser: Analyser, subject: str, items: list[str] | None) -> Any:
        sentiment = analyser(subject).sentiment
        if sentiment.label in self.spelled:
            return self.spelled[sentiment.label]
        # No "mixed" (or "neutral") in this enum: the score's side says it.
        side: SentimentLabel = "positive" if sentiment.score > 0 else "negative"
        if sentiment.score == 0 and "neutral" in self.spelled:
            side = "neutral"
        return self.spelled[side]


@dataclass(frozen=True, slots=True)
class _ScorePlan:
    """The sentiment score, as a number in the schema's range or as text."""

    number: _Number
    as_text: bool

    def fill(self, analyser: Analyser, subject: str, items: list[str] | None) -> Any:
        score = analyser(subject).sentiment.score
        return str(score) if self.as_text else self.number.value(score)


@dataclass(frozen=True, slots=True)
class _TopicsPlan:
    """The topics, as a list or as one comma-separated string."""

    as_text: bool
    most: int | None
    longest: int | None

    def fill(self, analyser: Analyser, subject: str, items: list[str] | None) -> Any:
        found = analyser(subject).topics
        if self.as_text:
            return _clip_text(", ".join(found), self.longest)
        return [_clip_text(topic, self.longest) for topic in found[: self.most]]


@dataclass(frozen=True, slots=True)
class _EntityShape:
    """Where an entity's text, type and offsets go in the schema's entity object."""

    text_props: tuple[tuple[str, int | None], ...]
    type_props: tuple[tuple[str, dict[EntityType, Any] | None], ...]
    offset_props: tuple[tuple[str, str], ...]
    neutral_props: tuple[tuple[str, Callable[[str], Any]], ...]

    @classmethod
    def compile(cls, schema: Schema) -> _EntityShape:
        text_props: list[tuple[str, int | None]] = []
        type_props: list[tuple[str, dict[EntityType, Any] | None]] = []
        offset_props: list[tuple[str, str]] = []
        neutral_props: list[tuple[str, Callable[[str], Any]]] = []
        for prop, prop_schema in schema.properties.items():
            lowered, kind = prop.lower(), prop_schema.kind
            if lowered in _ENTITY_TEXT_NAMES and kind in _TEXT_KINDS:
                text_props.append((prop, _limit(prop_schema, "maxLength")))
            elif lowered in _ENTITY_TYPE_NAMES and kind in _TEXT_KINDS:
                type_props.append((prop, _entity_types(prop_schema.choices)))
            elif lowered in _ENTITY_OFFSET_NAMES and kind in _NUMBER_KINDS:
                offset_props.append((prop, lowered))
            elif prop in schema.required:
                neutral_props.append((prop, _neutral(prop_schema)))
        return cls(tuple(text_props), tuple(type_props), tuple(offset_props), tuple(neutral_props))

    def value(self, entity: FoundEntity, subject: str) -> dict[str, Any] | None:
        """``entity`` in this shape, its text, type and offsets first; ``None`` when the
        schema cannot spell its type."""
        value: dict[str, Any] = {prop: _clip_text(entity.text, n) for prop, n in self.text_props}
        for prop, spelled in self.type_props:
            if spelled is None:
                value[prop] = entity.type
            elif entity.type in spelled:
                value[prop] = spelled[entity.type]
            else:
                return None
        for prop, which in self.offset_props:
            value[prop] = entity.start if which == "start" else entity.end
        for prop, make in self.neutral_props:
            value[prop] = make(subject)
        return value


def _entity_types(choices: tuple[Any, ...]) -> dict[EntityType, Any] | None:
    """How an enum spells each entity type (``other`` standing in for types it lacks);
    ``None`` when any spelling goes."""
    if not choices:
        return None
    spelled: dict[EntityType, Any] = {}
    for entity_type, spellings in _ENTITY_TYPE_SPELLINGS.items():
        choice = _spelling(choices, entity_type, spellings)
        if choice is not None:
            spelled[entity_type] = choice
    if "other" in spelled:
        for entity_type in _ENTITY_TYPE_SPELLINGS:
            spelled.setdefault(entity_type, spelled["other"])
    return spelled


@dataclass(frozen=True, slots=True)
class _EntitiesPlan:
    """The entities, as a list of objects or strings, or as one string."""

    shape: _EntityShape | None  # None: each entity is its text
    as_text: bool
    most: int | None
    longest: int | None

    def fill(self, analyser: Analyser, subject: str, items: list[str] | None) -> Any:
        found = analyser(subject).entities
        if self.as_text:
            listed = "; ".join(f"{entity.text} ({entity.type})" for entity in found)
            return _clip_text(listed, self.longest)
        if self.shape is None:
            values: list[Any] = [_clip_text(entity.text, self.longest) for entity in found]
        else:
            shaped = (self.shape.value(entity, subject) for entity in found)
            values = [value for value in shaped if value is not None]
        return values[: self.most]


def _reading_plan(reading: str, schema: Schema) -> Plan | None:
    """The plan of ``reading`` in type ``schema``, if the type can hold it."""
    kind = schema.kind
    if reading == "sentiment" and kind in _NUMBER_KINDS:
        reading = "score"
    if reading == "sentiment":
        return _SentimentLabelPlan.compile(schema) if kind in _TEXT_KINDS else None
    if reading == "score":
        if kind in _NUMBER_KINDS or kind in _TEXT_KINDS:
            return _ScorePlan(_Number.of(schema), as_text=kind in _TEXT_KINDS)
        return None
    if kind not in _TEXT_KINDS and kind != "array":
        return None
    as_text = kind == "string"
    most = _limit(schema, "maxItems")
    if reading == "topics":
        longest = _limit(schema if as_text else schema.items, "maxLength")
        return _TopicsPlan(as_text, most, longest)
    items = schema.items
    shape = _EntityShape.compile(items) if items.kind == "object" else None
    longest = _limit(schema if as_text else items, "maxLength")
    return _EntitiesPlan(shape, as_text, most, longest)


# --- structure -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ObjectPlan:
    """An object whose readings are filled, and whose other required properties get
    neutral values."""

    readings: tuple[tuple[str, Plan], ...]
    neutrals: tuple[tuple[str, Callable[[str], Any]], ...]

    def fill(self, analyser: Analyser, subject: str, items: list[str] | None) -> Any:
        value = {prop: plan.fill(analyser, subject, None) for prop, plan in self.readings}
        for prop, make in self.neutrals:
            value[prop] = make(subject)
        return value


@dataclass(frozen=True, slots=True)
class _ListPlan:
    """A list with one item per text."""

    item: Plan
    most: int | None

    def fill(self, analyser: Analyser, subject: str, items: list[str] | None) -> Any:
        texts = items if items is not None else [subject]
        return [self.item.fill(analyser, text, None) for text in texts[: self.most]]


def _compile(name: str, schema: Schema, depth: int) -> Plan | None:
    if depth > _MAX_DEPTH:
        return None
    reading = _READINGS.get(name.lower())
    if reading:
        plan = _reading_plan(reading, schema)
        if plan is not None:
            return plan
    if schema.kind == "object":
        readings: list[tuple[int, str, Plan]] = []
        neutrals: list[tuple[str, Callable[[str], Any]]] = []
        for prop, prop_schema in schema.properties.items():
            prop_plan = _compile(prop, prop_schema, depth + 1)
            if prop_plan is not None:
                rank = _READINGS.get(prop.lower(), "")
                order = _READING_ORDER.index(rank) if rank else len(_READING_ORDER)
                readings.append((order, prop, prop_plan))
            elif prop in schema.required:
                neutrals.append((prop, _neutral(prop_schema, depth + 1)))
        if not readings:
            return None
        # The readings first, in their usual order (sentiment, score, topics, entities).
        readings.sort(key=lambda reading: reading[0])
        return _ObjectPlan(tuple((p, plan) for _, p, plan in readings), tuple(neutrals))
    if schema.kind == "array":
        item = _compile(_singular(name), schema.items, depth + 1)
        if item is not None:
            return _ListPlan(item, _limit(schema, "maxItems"))
    return None


@functools.lru_cache(maxsize=_PLAN_MEMO)
def compile_plan(name: str, schema: Schema) -> Plan | None:
    """The plan that fills output field ``name`` of type ``schema`` from the text
    analysis, or ``None`` when the field asks for no reading (memoized per schema
    object: prompts of one signature share theirs).

    Parameters:
        name: the field's name.
        schema: its type.
    """
    return _compile(name, schema, 0)
