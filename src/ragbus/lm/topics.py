"""Keyword topics: a text's most salient content words.

A content word is one of three or more letters that is not a stopword (the search
index's list, :data:`ragbus.text.STOPWORDS`), not a generic word, not a negator or
intensifier and not a sentiment word (those are opinions, not topics). Words count under
their Snowball stem, so ``battery`` and ``batteries`` are one topic; a topic is named by
its most frequent form, lower-cased. The most frequent topics come first; ties keep the
order in which the text first mentions them, except that past-tense forms (``reported``,
``announced``) yield to other words: they are more often events than subjects. The words
of names of people, dates and numbers are left to the entities.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Final

from ragbus.lm.lexicon import word_info
from ragbus.lm.tokens import Token

#: Most topics reported for one text.
TOPICS_PER_TEXT: Final = 8


def topics(
    tokens: Sequence[Token], skip: Collection[int] = (), limit: int = TOPICS_PER_TEXT
) -> tuple[str, ...]:
    """The most salient topics of a text, most salient first.

    Parameters:
        tokens: the text's words (:func:`ragbus.lm.tokens.tokenize`).
        skip: indexes of tokens that are no topic words (default none).
        limit: at most this many topics (default :data:`TOPICS_PER_TEXT`).
    """
    counts: dict[str, int] = {}
    forms: dict[str, dict[str, int]] = {}
    for index, token in enumerate(tokens):
        topic = word_info(token.lower).topic
        if topic is None or index in skip:
            continue
        counts[topic] = counts.get(topic, 0) + 1
        form = token.lower.removesuffix("'s")
        spellings = forms.setdefault(topic, {})
        spellings[form] = spellings.get(form, 0) + 1
    named = {topic: max(spellings, key=spellings.__getitem__) for topic, spellings in forms.items()}
    # dicts keep first-mention order and sorted() is stable: ties stay in text order.
    ranked = sorted(counts, key=lambda topic: (-counts[topic], named[topic].endswith("ed")))
    return tuple(named[topic] for topic in ranked[:limit])
