"""Hybrid retrieval: BM25 and dense rankings fused by reciprocal rank (RRF).

Each passage scores ``sum(1 / (RRF_K + rank))`` over the rankings it appears in (rank
from 1), as Cormack, Clarke and Büttcher (2009) proposed: it needs no calibration of
BM25 scores against cosine similarities, and a passage that both rankings place high
wins. Both searches run at once: BM25 in the search threads while the question is
embedded.
"""

from __future__ import annotations

import asyncio
from typing import Final

from ragbus.payloads.rag import Passage
from ragbus.retrieval.bm25 import Bm25Retriever
from ragbus.retrieval.dense import EMBEDDER_DEPENDENCY, DenseRetriever

#: This retriever's kind, in settings and fingerprints.
HYBRID_KIND: Final = "hybrid"
#: The constant of reciprocal rank fusion (60, as in the paper and most search engines).
RRF_K: Final = 60
#: Each ranking fused is this many passages deep at least (or ``2 * k``, if deeper).
CANDIDATES: Final = 20
#: Decimals kept of a fused score.
_SCORE_DECIMALS: Final = 6


def fuse(rankings: list[list[Passage]], k: int, *, rrf_k: int = RRF_K) -> list[Passage]:
    """The ``k`` best passages of ``rankings`` by reciprocal rank fusion, best first;
    ties keep the order of first appearance (the first ranking's first).

    Parameters:
        rankings: lists of passages, each best first.
        k: how many to return at most.
        rrf_k: the fusion constant (default 60).
    """
    scores: dict[str, float] = {}
    first: dict[str, Passage] = {}
    for ranking in rankings:
        for rank, passage in enumerate(ranking, start=1):
            scores[passage.doc_id] = scores.get(passage.doc_id, 0.0) + 1.0 / (rrf_k + rank)
            first.setdefault(passage.doc_id, passage)
    order = sorted(first, key=lambda doc_id: -scores[doc_id])  # stable: first seen first
    return [
        first[doc_id].model_copy(update={"score": round(scores[doc_id], _SCORE_DECIMALS)})
        for doc_id in order[:k]
    ]


class HybridRetriever:
    """Fuses a BM25 and a dense ranking of the same corpus (see the module docstring).

    Scores are fused RRF scores (at most ``2 / (RRF_K + 1)``).

    Parameters:
        bm25: the BM25 retriever.
        dense: the dense retriever over the same passages.
        rrf_k: the fusion constant (default 60).
    """

    kind: Final = HYBRID_KIND
    dependency: Final = EMBEDDER_DEPENDENCY

    def __init__(self, bm25: Bm25Retriever, dense: DenseRetriever, *, rrf_k: int = RRF_K) -> None:
        if bm25.index.fingerprint != dense.corpus_version:
            raise ValueError("the BM25 and dense retrievers must search the same corpus")
        self.bm25 = bm25
        self.dense = dense
        self.rrf_k = rrf_k

    @property
    def fingerprint(self) -> str:
        """``hybrid:``, the fusion constant, the embedding model and the corpus version."""
        return f"{self.kind}:rrf{self.rrf_k}:{self.dense.model}:{self.dense.corpus_version}"

    @property
    def size(self) -> int:
        """How many passages it searches."""
        return self.dense.size

    async def search(self, query: str, k: int) -> list[Passage]:
        """The at most ``k`` best passages for ``query`` by both rankings, best first.

        Parameters:
            query: free text.
            k: how many passages to return at most (at least 1).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        depth = max(CANDIDATES, 2 * k)
        by_terms, by_meaning = await asyncio.gather(
            self.bm25.search(query, depth), self.dense.search(query, depth)
        )
        return fuse([by_terms, by_meaning], k, rrf_k=self.rrf_k)
