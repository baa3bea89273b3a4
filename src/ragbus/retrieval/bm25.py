"""BM25 retrieval: the terms of the question against the terms of the passages, offline."""

from __future__ import annotations

from typing import Final

from ragbus.payloads.rag import Passage
from ragbus.retrieval.index import SearchIndex
from ragbus.retrieval.offload import off_loop

#: This retriever's kind, in settings and fingerprints.
BM25_KIND: Final = "bm25"


class Bm25Retriever:
    """Searches a BM25 index in the search threads (:mod:`ragbus.retrieval.offload`).

    Passages that share no term with the question are left out, so a search may find
    fewer than ``k`` or none. Scores are BM25 scores.

    Parameters:
        index: the BM25 index.
        off_loop: search in the search threads (default true); false searches in the
            calling task, which blocks the event loop for as long as a search takes
            (kept to measure the difference).
    """

    kind: Final = BM25_KIND
    dependency = None

    def __init__(self, index: SearchIndex, *, off_loop: bool = True) -> None:
        self.index = index
        self.off_loop = off_loop

    @property
    def fingerprint(self) -> str:
        """``bm25:`` and the corpus version."""
        return f"{self.kind}:{self.index.fingerprint}"

    @property
    def size(self) -> int:
        """How many passages it searches."""
        return len(self.index)

    async def search(self, query: str, k: int) -> list[Passage]:
        """The at most ``k`` passages that best match ``query``, best first.

        Parameters:
            query: free text.
            k: how many passages to return at most (at least 1).
        """
        if not self.off_loop:
            return self.index.search(query, k)
        return await off_loop(self.index.search, query, k)
