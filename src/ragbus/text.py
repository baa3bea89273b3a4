"""Word-level text processing shared by the search index and the offline LM.

Both sides must agree on what a term is, so that the passages the index finds and the
sentences the offline LM picks are matched the same way: lower-cased words of two or
more letters or digits, English stopwords removed, Snowball (Porter 2) stems.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable
from typing import Any, Final

import snowballstemmer

#: Changes whenever the term rules below change; part of every index fingerprint.
TERMS_VERSION: Final = 1

#: The pattern of a word, as bm25s uses it: two or more word characters.
WORD_PATTERN: Final = r"(?u)\b\w\w+\b"

_WORD = re.compile(WORD_PATTERN)

#: English function words that carry no meaning for matching (the NLTK list).
STOPWORDS: Final[frozenset[str]] = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "ain",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "aren",
        "aren't",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "couldn",
        "couldn't",
        "d",
        "did",
        "didn",
        "didn't",
        "do",
        "does",
        "doesn",
        "doesn't",
        "doing",
        "don",
        "don't",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "hadn",
        "hadn't",
        "has",
        "hasn",
        "hasn't",
        "have",
        "haven",
        "haven't",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "isn",
        "isn't",
        "it",
        "it's",
        "its",
        "itself",
        "just",
        "ll",
        "m",
        "ma",
        "me",
        "mightn",
        "mightn't",
        "more",
        "most",
        "mustn",
        "mustn't",
        "my",
        "myself",
        "needn",
        "needn't",
        "no",
        "nor",
        "not",
        "now",
        "o",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "re",
        "s",
        "same",
        "shan",
        "shan't",
        "she",
        "she's",
        "should",
        "should've",
        "shouldn",
        "shouldn't",
        "so",
        "some",
        "such",
        "t",
        "than",
        "that",
        "that'll",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "ve",
        "very",
        "was",
        "wasn",
        "wasn't",
        "we",
        "were",
        "weren",
        "weren't",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "won",
        "won't",
        "wouldn",
        "wouldn't",
        "y",
        "you",
        "you'd",
        "you'll",
        "you're",
        "you've",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)

_local = threading.local()


def _stemmer() -> Any:
    # Snowball stemmer objects keep state while stemming: one per thread.
    stemmer: Any = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = snowballstemmer.stemmer("english")
        _local.stemmer = stemmer
    return stemmer


@functools.lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """The Snowball English stem of one lower-cased word (memoized: pure-Python stemming
    costs tens of microseconds a word, and a corpus repeats its words)."""
    return str(_stemmer().stemWord(word))


def stem_words(words: list[str]) -> list[str]:
    """The Snowball English stem of each word, in order.

    Parameters:
        words: lower-cased words.
    """
    return [stem(word) for word in words]


def words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (two or more word characters each)."""
    return _WORD.findall(text.lower())


def terms(text: str) -> list[str]:
    """The stemmed content words of ``text``, in order, stopwords removed."""
    return stem_words([word for word in words(text) if word not in STOPWORDS])


def term_set(texts: Iterable[str]) -> set[str]:
    """The distinct terms of all ``texts``."""
    found: set[str] = set()
    for text in texts:
        found.update(terms(text))
    return found
