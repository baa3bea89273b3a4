"""The retrieve stage: ``query_received`` -> ``documents_retrieved``."""

from __future__ import annotations

import time

from ragbus.errors import PermanentError
from ragbus.events import Envelope
from ragbus.observability import tracing
from ragbus.payloads.rag import DocumentsRetrieved, QueryReceived, RagEvent
from ragbus.retrieval.retriever import Retriever


class RetrieveHandler:
    """Finds the passages for a question with a retriever (BM25, dense or hybrid).

    For each ``query_received`` event it returns one ``documents_retrieved`` event
    (derived: deterministic id, same correlation) with the best passages, best first;
    the list may be empty. The search never blocks the event loop (see
    :class:`~ragbus.retrieval.retriever.Retriever`). Errors of the retriever (an
    embedding model that fails) propagate unchanged; the runtime classifies them.

    Parameters:
        retriever: what searches the corpus.
        default_k: passages to retrieve when the query does not set ``k``
            (default 4).
    """

    def __init__(self, retriever: Retriever, *, default_k: int = 4) -> None:
        if default_k < 1:
            raise ValueError(f"default_k must be at least 1, got {default_k}")
        self.retriever = retriever
        self.default_k = default_k

    @property
    def fingerprint(self) -> str:
        """What determines this stage's output besides its input: the retriever's kind,
        model and corpus version, and the default ``k`` (a part of cache keys)."""
        return f"{self.retriever.fingerprint}:k={self.default_k}"

    @property
    def dependency(self) -> str | None:
        """The external dependency a search calls (``embedder`` for dense and hybrid
        retrieval, else none): the stage shares its breaker and flow control."""
        return self.retriever.dependency

    async def __call__(self, event: Envelope) -> list[Envelope]:
        """Retrieve the passages for the question of ``event``.

        Raises :class:`~ragbus.errors.PermanentError` for an event that is not a
        ``query_received``.

        Parameters:
            event: a ``query_received`` event.
        """
        if event.type != RagEvent.QUERY_RECEIVED:
            raise PermanentError(f"the retrieve stage takes query_received, not {event.type}")
        query = event.payload_as(QueryReceived)
        started = time.perf_counter()
        k = query.k or self.default_k
        with tracing.span("retrieve", {"ragbus.retrieval.k": k}, client=False) as span:
            passages = await self.retriever.search(query.question, k)
            if span is not None:
                span.set_attribute("ragbus.retrieval.passages", len(passages))
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        payload = DocumentsRetrieved(
            question=query.question,
            passages=passages,
            history=query.history,
            timings_ms={"retrieve": elapsed_ms},
        )
        return [event.derive(RagEvent.DOCUMENTS_RETRIEVED, payload)]
