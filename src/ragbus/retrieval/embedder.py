"""Embedding texts with any LiteLLM embedding model, through ``dspy.Embedder``.

Texts are sent in batches of ``batch_size`` per call (one HTTP request each). DSPy's and
LiteLLM's own retries and caches are off: ragbus retries a failed search around the
whole retrieve stage (its breaker, retries, cache and flow control are those of the
``embedder`` dependency), and ``ragbus index`` reuses the vectors of unchanged passages
itself. Every vector is returned unit-length (:func:`ragbus.retrieval.vectors.normalized`).

Questions are embedded through :class:`QueryEmbeddings`, which batches concurrent
questions into one call without making a lone one wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ragbus.errors import ConfigurationError, TransientError
from ragbus.retrieval.vectors import Matrix, normalized, stack

if TYPE_CHECKING:
    import dspy

    from ragbus.config import Settings

#: Default texts per embedding call.
DEFAULT_BATCH_SIZE: Final = 64


class _NoRetries(int):
    """Zero retries that read as true.

    LiteLLM's OpenAI embedding client takes ``max_retries or DEFAULT_MAX_RETRIES``
    (BerriAI/litellm#7003), so a plain ``0`` becomes the OpenAI SDK's 2 retries, and
    every failed call would reach the server three times inside ragbus's own retries.
    This zero passes that ``or`` and the SDK's ``isinstance(..., int)`` check, and the
    SDK computes with it as 0: one request per call.
    """

    def __bool__(self) -> bool:
        return True


_NO_RETRIES: Final = _NoRetries(0)


@dataclass(frozen=True)
class Embedder:
    """An embedding model, called in batches.

    Parameters:
        model: a LiteLLM embedding model, e.g. ``openai/text-embedding-3-small`` or
            ``ollama/nomic-embed-text``.
        api_base: the server's URL (default: the provider's).
        api_key: the API key (default: the provider's environment variable).
        batch_size: texts per call at most (default 64).
    """

    model: str
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder | None:
        """The embedder ``settings`` configure (``embed_model``, ``embed_api_base``,
        ``embed_api_key``, ``embed_batch_size``), or None when no model is set."""
        if not settings.embed_model:
            return None
        key = settings.embed_api_key.get_secret_value() if settings.embed_api_key else None
        return cls(
            settings.embed_model,
            api_base=settings.embed_api_base,
            api_key=key,
            batch_size=settings.embed_batch_size,
        )

    def _client(self) -> dspy.Embedder:
        import dspy  # on first use: indexing without embeddings never loads DSPy

        options: dict[str, Any] = {"num_retries": 0, "max_retries": _NO_RETRIES}
        if self.api_base:
            options["api_base"] = self.api_base
        if self.api_key:
            options["api_key"] = self.api_key
        try:
            return dspy.Embedder(self.model, batch_size=self.batch_size, caching=False, **options)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"cannot use embedding model {self.model!r}: {exc}") from exc

    async def embed(
        self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None
    ) -> Matrix:
        """The unit vectors of ``texts``, one row each, in order.

        Raises what the model's client raises (LiteLLM's errors: a 429 or 5xx is
        transient, a bad key permanent), and :class:`~ragbus.errors.TransientError` when
        the server answers with the wrong number of vectors or vectors of mixed lengths.

        Parameters:
            texts: the texts (none: an empty matrix with no columns).
            progress: called with the number of texts embedded so far after each call
                (default: none).
        """
        client = self._client()
        rows: list[Matrix] = []
        done = 0
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            try:
                vectors = await client.acall(batch, caching=False)
            except ValueError as exc:  # rows of different lengths: a broken response
                raise TransientError(f"{self.model} returned malformed vectors: {exc}") from exc
            if vectors.ndim != 2 or vectors.shape[0] != len(batch):
                raise TransientError(
                    f"{self.model} returned {vectors.shape[0] if vectors.ndim else 0} "
                    f"vectors for {len(batch)} texts"
                )
            rows.append(normalized(vectors))
            done += len(batch)
            if progress is not None:
                progress(done)
        dimensions = rows[0].shape[1] if rows else 0
        if any(row.shape[1] != dimensions for row in rows):
            raise TransientError(f"{self.model} returned vectors of different lengths")
        return stack(rows, dimensions)


@dataclass(eq=False)
class _Waiting:
    text: str
    future: asyncio.Future[Matrix]


class QueryEmbeddings:
    """Embeds questions one at a time for callers, in batches for the model.

    The first question is sent at once; questions that arrive while a call is in flight
    wait for it to end and then go together in the next call (up to the embedder's
    ``batch_size``). A lone question never waits for others, and under load the calls
    carry many questions each. A failed call fails every question it carried (each is
    retried by its own stage guards).

    Parameters:
        embedder: the model to call.
    """

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._waiting: list[_Waiting] = []
        self._sender: asyncio.Task[None] | None = None

    async def embed(self, text: str) -> Matrix:
        """The unit vector of ``text``, as a ``1 x d`` matrix.

        Parameters:
            text: a question.
        """
        waiting = _Waiting(text, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send(), name="ragbus-query-embeddings")
        return await waiting.future

    async def _send(self) -> None:
        try:
            while self._waiting:
                size = self.embedder.batch_size
                taken, self._waiting = self._waiting[:size], self._waiting[size:]
                batch = [waiting for waiting in taken if not waiting.future.done()]
                if not batch:  # all cancelled while waiting (timeouts)
                    continue
                try:
                    vectors = await self.embedder.embed([waiting.text for waiting in batch])
                except Exception as exc:
                    for waiting in batch:
                        if not waiting.future.done():
                            waiting.future.set_exception(exc)
                    continue
                for row, waiting in enumerate(batch):
                    if not waiting.future.done():
                        waiting.future.set_result(vectors[row : row + 1])
        finally:
            self._sender = None
