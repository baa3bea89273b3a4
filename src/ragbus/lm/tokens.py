"""Splitting a text into word tokens that know where their clause and sentence begin.

The offline analysis reads words in order (negation and intensifiers look back a few
words, but not across a comma or a full stop) and needs their positions (entities are
spans of the original text), so a token keeps its offsets and whether punctuation
separates it from the word before.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

# A word: letters or digits (any script), with inner apostrophes (don't, O'Neill).
_APOSTROPHES: Final = "'\u2019"
_WORD: Final = re.compile(rf"[^\W_]+(?:[{_APOSTROPHES}][^\W_]+)*")
_SENTENCE_END: Final = re.compile(r"[.!?\n…]")
# Clause ends: sentence ends, commas and the like, brackets, quotes, en and em dashes.
_CLAUSE_END: Final = re.compile('[.!?\n…,;:()\\[\\]{}"“”\u2013\u2014]')


class Token(NamedTuple):
    """One word of a text (a named tuple: texts have many words, and tuples are cheap to
    make).

    Parameters:
        text: the word as written.
        lower: the word lower-cased, with a straight apostrophe.
        start: its offset in the text.
        end: the offset just after it.
        clause_start: whether it opens a clause (punctuation or the text's start
            precedes it).
        sentence_start: whether it opens a sentence (a full stop, ``!``, ``?``, a line
            break or the text's start precedes it).
    """

    text: str
    lower: str
    start: int
    end: int
    clause_start: bool
    sentence_start: bool


def tokenize(text: str) -> tuple[Token, ...]:
    """The word tokens of ``text``, in order.

    Parameters:
        text: any text.
    """
    found: list[Token] = []
    previous_end = -1
    for match in _WORD.finditer(text):
        start, end = match.span()
        word = match.group()
        if previous_end < 0:
            clause_start = sentence_start = True
        elif start - previous_end == 1 and text[previous_end] == " ":
            clause_start = sentence_start = False  # the common case: one space
        else:
            gap = text[previous_end:start]
            clause_start = _CLAUSE_END.search(gap) is not None
            sentence_start = clause_start and _SENTENCE_END.search(gap) is not None
        found.append(
            Token(
                word, word.lower().replace("\u2019", "'"), start, end, clause_start, sentence_start
            )
        )
        previous_end = end
    return tuple(found)
