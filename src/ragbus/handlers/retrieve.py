"""The retrieve stage: ``query_received`` -> ``documents_retrieved``."""

from __future__ import annotations

import time

from ragbus.errors import PermanentError
from ragbus.events import Envelope
from ragbus.payloads.rag import DocumentsRetrieved, QueryReceived, RagEvent
from ragbus.retrieval.index import SearchIndex


class RetrieveHandler:
    """Finds the passages for a question with BM25 search.

    For each ``query_received`` event it returns one ``documents_retrieved`` event
    (derived: deterministic id, same correlation) with the best passages, best first;
    passages that share no term with the question are left out, so the list may be
    empty. Searching is fast and runs in the calling task.

    Parameters:
        index: the search index.
        default_k: passages to retrieve when the query does not set ``k``
            (default 4).
    """

    def __init__(self, index: SearchIndex, *, default_k: int = 4) -> None:
        if default_k < 1:
            raise ValueError(f"default_k must be at least 1, got {default_k}")
        self.index = index
        self.default_k = default_k

    @property
    def fingerprint(self) -> str:
        """What determines this stage's output besides its input: the corpus and the
        default ``k`` (a part of cache keys)."""
        return f"bm25:{self.index.fingerprint}:k={self.default_k}"

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
        passages = self.index.search(query.question, query.k or self.default_k)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        payload = DocumentsRetrieved(
            question=query.question,
            passages=passages,
            history=query.history,
            timings_ms={"retrieve": elapsed_ms},
        )
        return [event.derive(RagEvent.DOCUMENTS_RETRIEVED, payload)]
