"""The offline reading of one text: its sentiment, topics and entities, without a model.

:func:`analyse` combines :mod:`ragbus.lm.sentiment` (a hand-written lexicon with negation
and intensifiers), :mod:`ragbus.lm.topics` (salient content words) and
:mod:`ragbus.lm.entities` (dates, numbers and capitalised spans). It is a pure function
of the text, memoized, so a text analysed alone and the same text in a batch get the
same answer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

from ragbus.lm.entities import FoundEntity, entities
from ragbus.lm.sentiment import Sentiment, sentiment
from ragbus.lm.tokens import tokenize
from ragbus.lm.topics import topics

# Entities whose words are not topics: a person's name, a date, a number.
_NOT_TOPICS: Final = frozenset({"person", "date", "number"})

#: How many recent texts keep their analysis (a redelivered or repeated text is free).
MEMO_SIZE: Final = 4096


@dataclass(frozen=True, slots=True)
class Analysis:
    """What the offline analysis reads in one text.

    Parameters:
        sentiment: its sentiment label, score and cues.
        topics: its most salient topics, most salient first.
        entities: its entities, in order of appearance.
    """

    sentiment: Sentiment
    topics: tuple[str, ...]
    entities: tuple[FoundEntity, ...]


@functools.lru_cache(maxsize=MEMO_SIZE)
def analyse(text: str) -> Analysis:
    """The analysis of ``text`` (memoized). Leading and trailing whitespace is ignored:
    entity offsets count from the first non-blank character.

    Parameters:
        text: any text.
    """
    text = text.strip()
    tokens = tokenize(text)
    found = entities(text, tokens)
    named = [(entity.start, entity.end) for entity in found if entity.type in _NOT_TOPICS]
    in_names = (
        {
            index
            for index, token in enumerate(tokens)
            if any(start <= token.start < end for start, end in named)
        }
        if named
        else set()
    )
    return Analysis(
        sentiment=sentiment(tokens, text),
        topics=topics(tokens, skip=in_names),
        entities=found,
    )
