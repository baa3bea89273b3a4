"""What the retrieve stage searches with: the :class:`Retriever` interface.

Three kinds implement it: :class:`~ragbus.retrieval.bm25.Bm25Retriever` (terms, the
offline default), :class:`~ragbus.retrieval.dense.DenseRetriever` (embeddings) and
:class:`~ragbus.retrieval.hybrid.HybridRetriever` (both, ranks fused).
:func:`~ragbus.retrieval.factory.build_retriever` builds the one the settings name.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ragbus.payloads.rag import Passage


@runtime_checkable
class Retriever(Protocol):
    """Finds the passages of a corpus that best answer a question.

    Searching never blocks the event loop: CPU-bound work runs in a thread
    (:mod:`ragbus.retrieval.offload`), network calls are awaited.
    """

    @property
    def kind(self) -> str:
        """``bm25``, ``dense`` or ``hybrid``."""

    @property
    def fingerprint(self) -> str:
        """What determines the results besides the query: the kind, the embedding model
        (if any) and the corpus version. It changes only when one of them does, so it
        is a part of the retrieve stage's cache keys."""

    @property
    def dependency(self) -> str | None:
        """The external dependency a search calls (``embedder`` for dense and hybrid),
        whose breaker, retries and flow control the stage shares; ``None`` when it calls
        none."""

    @property
    def size(self) -> int:
        """How many passages it searches."""

    async def search(self, query: str, k: int) -> list[Passage]:
        """The at most ``k`` passages that best match ``query``, best first (possibly
        none).

        Parameters:
            query: free text.
            k: how many passages to return at most (at least 1).
        """
