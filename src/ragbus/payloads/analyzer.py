"""Payloads of the real-time text analyzer: ``text_received -> text_analyzed``."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Longest text the analyzer takes, in characters.
MAX_TEXT_CHARS: Final = 20_000
#: Most topics reported for one text.
MAX_TOPICS: Final = 8
#: Most entities reported for one text.
MAX_ENTITIES: Final = 50

#: The sentiment of a text as a whole.
SentimentLabel = Literal["positive", "negative", "neutral", "mixed"]
#: What kind of thing an entity is.
EntityType = Literal["person", "organization", "place", "date", "number", "other"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextReceived(_Strict):
    """A text to analyze.

    Parameters:
        text: the text, 1..20,000 characters.
        source: where it came from, for the caller's own bookkeeping (default "").
    """

    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    source: str = Field(default="", max_length=500)


class Entity(_Strict):
    """A named thing in a text."""

    text: str = Field(min_length=1, max_length=200, description="the entity as written")
    type: EntityType = Field(description="person, organization, place, date, number or other")


class TextAnalysis(_Strict):
    """What an LM reads in one text: its sentiment with a score, its topics, its entities."""

    sentiment: SentimentLabel = Field(description="positive, negative, neutral or mixed")
    score: float = Field(
        ge=-1.0, le=1.0, description="-1 (most negative) .. 1 (most positive); 0 is neutral"
    )
    topics: list[str] = Field(
        default_factory=list,
        max_length=MAX_TOPICS,
        description="short topic names, most salient first",
    )
    entities: list[Entity] = Field(default_factory=list, max_length=MAX_ENTITIES)


class TextAnalyzed(TextAnalysis):
    """The analysis of one ``text_received`` event (the analyze stage's output).

    ``offline`` is true when the offline LM produced it (a sentiment lexicon, keyword
    topics and capitalised spans, not a language model's reading).
    """

    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    source: str = Field(default="", max_length=500)
    model: str
    offline: bool = False
    timings_ms: dict[str, float] = Field(default_factory=dict)
