"""Recall@k of the retrievers on the labelled set that ships with the tests.

The set (``tests/data/labelled``): 30 passages of a company handbook and 24 questions,
each with the passage that answers it. A third of the questions use the passage's own
words, a third paraphrase it with words it does not contain ("kids" for
"youngsters"), and a few hinge on a rare term among common ones ("error code E4417").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ragbus.config import RetrieverKind, Settings
from ragbus.retrieval.embedder import Embedder
from ragbus.retrieval.factory import build_retriever
from ragbus.retrieval.indexer import update_index
from ragbus.retrieval.retriever import Retriever
from ragbus.retrieval.saved import CorpusIndex

#: The labelled set.
LABELLED: Final = Path(__file__).resolve().parents[2] / "tests" / "data" / "labelled"
#: The depths recall is reported at.
DEPTHS: Final = (1, 3, 5)


@dataclass(frozen=True)
class Question:
    """A labelled question: its text and the ids of the passages that answer it."""

    text: str
    relevant: frozenset[str]


def questions(path: Path = LABELLED / "questions.jsonl") -> list[Question]:
    """The labelled questions."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [Question(line["question"], frozenset(line["relevant"])) for line in lines]


async def index_labelled(target: Path, embedder: Embedder) -> CorpusIndex:
    """The labelled corpus indexed (and embedded with ``embedder``) into ``target``."""
    return (await update_index(LABELLED / "corpus.jsonl", target, embedder=embedder)).index


async def recall(
    retriever: Retriever, asked: Sequence[Question], depths: Sequence[int] = DEPTHS
) -> dict[int, float]:
    """For each depth k, the share of ``asked`` whose answer is among the first k found."""
    found = {k: 0 for k in depths}
    for question in asked:
        ids = [passage.doc_id for passage in await retriever.search(question.text, max(depths))]
        for k in depths:
            found[k] += bool(question.relevant & set(ids[:k]))
    return {k: found[k] / len(asked) for k in depths}


async def recall_by_kind(
    settings: Settings, index: CorpusIndex, asked: Sequence[Question]
) -> dict[str, dict[int, float]]:
    """Recall at each depth of BM25, dense and hybrid retrieval over ``index``.

    Parameters:
        settings: the embedding model settings (``embed_*``).
        index: the labelled corpus, embedded with that model.
        asked: the questions.
    """
    results = {}
    for kind in RetrieverKind:
        kind_settings = settings.model_copy(update={"retriever": kind})
        results[kind.value] = await recall(build_retriever(kind_settings, index), asked)
    return results
