"""Extractive answering: pick the context sentences that best match a question.

Passages are split into sentences; each sentence is scored against the question with
BM25 over the sentences of the context (the same terms as the search index: stopwords
removed, stemmed). The best sentence and up to two more that score close to it form the
answer, best first. When too little of the question is found in the context, there is
no answer.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Final

from ragbus.text import STOPWORDS, stem_words, terms, words

#: At most this many sentences form an answer.
MAX_SENTENCES: Final = 3
#: A further sentence joins the answer only if it scores at least this share of the best.
FOLLOWER_SHARE: Final = 0.6
#: The matched share of the question's term weight below which there is no answer.
MIN_COVERAGE: Final = 0.25

_K1: Final = 1.2
_B: Final = 0.75
_MIN_SENTENCE_WORDS: Final = 3

_BLOCK_BREAK = re.compile(r"\n\s*\n|\n(?=\s*(?:[-*+]|\d+[.)])\s)")
_SENTENCE_BREAK = re.compile(
    r"(?<=[.!?])(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\betc\.)(?<!\bvs\.)[\"')\]]*\s+(?=\S)"
)
_LIST_MARKER = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_FENCE_LINE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True, slots=True)
class Sentence:
    """A sentence of the context and where it came from.

    Parameters:
        text: the sentence, verbatim apart from surrounding whitespace and list markers.
        passage: index of its passage in the context, from 0.
        position: index of the sentence within its passage, from 0.
        score: its BM25 score against the question.
    """

    text: str
    passage: int
    position: int
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class Extraction:
    """The result of :func:`extract`.

    Parameters:
        sentences: the chosen sentences, best first (empty when there is no answer).
        matched_words: the question's words found in the chosen sentences (for a
            summary: the text's most frequent terms found in them).
        question_words: the question's content words.
        passage_count: how many passages the context had.
        summary: the sentences summarize a text that came with no question
            (:func:`summarize`), rather than answer one (default False).
    """

    sentences: tuple[Sentence, ...]
    matched_words: tuple[str, ...]
    question_words: tuple[str, ...]
    passage_count: int
    summary: bool = False

    @property
    def found(self) -> bool:
        """Whether the context answers the question."""
        return bool(self.sentences)

    @property
    def passages(self) -> list[int]:
        """The passages (0-based, ascending) the chosen sentences come from."""
        return sorted({sentence.passage for sentence in self.sentences})


def split_sentences(passage: str) -> list[str]:
    """The sentences of a passage: split at paragraph breaks, list items and sentence
    ends; code fences and fragments of fewer than three words are dropped."""
    sentences: list[str] = []
    for block in _BLOCK_BREAK.split(passage):
        lines = [line for line in block.splitlines() if not _FENCE_LINE.match(line)]
        block_text = _LIST_MARKER.sub("", " ".join(line.strip() for line in lines)).strip()
        for sentence in _SENTENCE_BREAK.split(block_text):
            sentence = sentence.strip()
            if len(sentence.split()) >= _MIN_SENTENCE_WORDS:
                sentences.append(sentence)
    return sentences


@functools.lru_cache(maxsize=4096)
def _analysed_sentences(passage: str) -> tuple[tuple[str, Counter[str]], ...]:
    """Each sentence of ``passage`` with its term counts (memoized: a corpus's passages
    come back question after question; the counters are read, never changed)."""
    return tuple((sentence, Counter(terms(sentence))) for sentence in split_sentences(passage))


def _question_words(question: str) -> dict[str, str]:
    """Each distinct stem of the question's content words, mapped to its first word."""
    content = [word for word in words(question) if word not in STOPWORDS]
    found: dict[str, str] = {}
    for word, stem in zip(content, stem_words(content), strict=True):
        found.setdefault(stem, word)
    return found


def summarize(text: str, *, most: int = 1) -> Extraction:
    """The sentence(s) of ``text`` that best stand for all of it: those whose distinct
    terms are the most frequent in the whole text (per word, so a long sentence does not
    win by length), in the text's order. For a prompt that gives a text and asks for
    something about it, with no question and no passages to search (a summary, a
    title).

    Parameters:
        text: the text.
        most: sentences to choose at most (default 1).
    """
    analysed = _analysed_sentences(text)
    if not analysed:
        return Extraction((), (), (), 1, summary=True)
    frequency = Counter(term for _, counts in analysed for term in counts)
    scored = []
    for position, (sentence, counts) in enumerate(analysed):
        score = sum(frequency[term] for term in counts) / math.sqrt(sum(counts.values()) or 1)
        scored.append(Sentence(sentence, 0, position, round(score, 4)))
    chosen = sorted(scored, key=lambda s: (-s.score, s.position))[:most]
    chosen.sort(key=lambda s: s.position)
    found = {term for s in chosen for term in terms(s.text)}
    shown = _question_words(" ".join(s.text for s in chosen))  # stem -> the word as written
    top = [term for term, _ in frequency.most_common(5) if term in found]
    return Extraction(
        sentences=tuple(chosen),
        matched_words=tuple(shown.get(term, term) for term in top),
        question_words=(),
        passage_count=1,
        summary=True,
    )


def extract(question: str, passages: list[str]) -> Extraction:
    """The sentences of ``passages`` that best answer ``question``.

    Parameters:
        question: the question.
        passages: the context passages, most relevant first.
    """
    query = _question_words(question)
    analysed = [
        (passage_index, position, sentence, counts)
        for passage_index, passage in enumerate(passages)
        for position, (sentence, counts) in enumerate(_analysed_sentences(passage))
    ]
    no_answer = Extraction((), (), tuple(query.values()), len(passages))
    if not query or not analysed:
        return no_answer

    candidates = [
        (passage_index, position, sentence) for passage_index, position, sentence, _ in analysed
    ]
    sentence_terms = [counts for *_, counts in analysed]
    count = len(candidates)
    average_length = sum(sum(t.values()) for t in sentence_terms) / count or 1.0
    frequency = Counter(term for t in sentence_terms for term in t)
    idf = {
        term: math.log(1 + (count - frequency[term] + 0.5) / (frequency[term] + 0.5))
        for term in query
    }

    scored: list[tuple[Sentence, Counter[str]]] = []
    for (passage_index, position, text), counts in zip(candidates, sentence_terms, strict=True):
        length = sum(counts.values())
        score = 0.0
        for term in query:
            tf = counts.get(term, 0)
            if tf:
                norm = tf + _K1 * (1 - _B + _B * length / average_length)
                score += idf[term] * tf * (_K1 + 1) / norm
        if score > 0:
            scored.append((Sentence(text, passage_index, position, round(score, 4)), counts))
    if not scored:
        return no_answer

    scored.sort(key=lambda item: (-item[0].score, item[0].passage, item[0].position))
    best = scored[0][0].score
    chosen: list[Sentence] = []
    matched: set[str] = set()
    for sentence, counts in scored:
        if len(chosen) == MAX_SENTENCES or sentence.score < FOLLOWER_SHARE * best:
            break
        if all(sentence.text != other.text for other in chosen):
            chosen.append(sentence)
            matched.update(term for term in counts if term in query)

    coverage = sum(idf[term] for term in matched) / sum(idf.values())
    if coverage < MIN_COVERAGE:
        return no_answer
    return Extraction(
        sentences=tuple(chosen),
        matched_words=tuple(word for stem, word in query.items() if stem in matched),
        question_words=tuple(query.values()),
        passage_count=len(passages),
    )
