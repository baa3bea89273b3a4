"""Micro-batching: concurrent events of one stage handled by one call of its batch handler.

Each event still goes through the stage's guards on its own (deduplication, deadline,
cache, retries, breaker, timeout) and is published, acknowledged or dead-lettered on its
own. Only the innermost call is shared: the events waiting there are handed to the batch
handler together, up to ``size`` at once, or fewer when ``max_wait_s`` runs out first.
Each event gets its own result back; an exception returned for one event fails that
event alone, an exception raised by the batch handler fails every event of the batch.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ragbus.errors import PermanentError
from ragbus.events import Envelope
from ragbus.runtime.stage import BatchHandler

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Waiting:
    envelope: Envelope
    future: asyncio.Future[list[Envelope]]


class Batcher:
    """A per-event handler that calls ``batch_handler`` with batches of events.

    Parameters:
        batch_handler: takes up to ``size`` events, returns one result per event.
        size: events per call at most (at least 1).
        max_wait_s: longest time the first event of a batch waits for others, in
            seconds (default 0.05).
    """

    def __init__(self, batch_handler: BatchHandler, *, size: int, max_wait_s: float = 0.05) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.batch_handler = batch_handler
        self.size = size
        self.max_wait_s = max_wait_s
        self.fingerprint = str(getattr(batch_handler, "fingerprint", ""))
        self._waiting: list[_Waiting] = []
        self._timer: asyncio.TimerHandle | None = None
        self._calls: set[asyncio.Task[None]] = set()

    async def __call__(self, envelope: Envelope) -> list[Envelope]:
        """Handle ``envelope`` in the next batch; returns its outputs."""
        loop = asyncio.get_running_loop()
        entry = _Waiting(envelope, loop.create_future())
        entry.future.add_done_callback(_mark_retrieved)
        self._waiting.append(entry)
        if len(self._waiting) >= self.size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait_s, self._flush)
        try:
            return await asyncio.shield(entry.future)
        except asyncio.CancelledError:
            # Cancelled while waiting (a timeout, a shutdown): leave the batch if it has
            # not been sent yet; a batch already sent finishes for the others.
            if entry in self._waiting:
                self._waiting.remove(entry)
            raise

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting:
            batch, self._waiting = self._waiting[: self.size], self._waiting[self.size :]
            task = asyncio.get_running_loop().create_task(self._call(batch))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
            if len(self._waiting) < self.size:
                break
        if self._waiting and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_wait_s, self._flush)

    async def _call(self, batch: list[_Waiting]) -> None:
        try:
            results = await self.batch_handler([entry.envelope for entry in batch])
            if len(results) != len(batch):
                raise PermanentError(
                    f"the batch handler returned {len(results)} results for {len(batch)} events"
                )
        except BaseException as exc:  # every event of the batch fails with it
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for entry, result in zip(batch, results, strict=True):
            if entry.future.done():
                continue
            if isinstance(result, BaseException):
                entry.future.set_exception(result)
            else:
                entry.future.set_result(result)

    async def close(self) -> None:
        """Wait for the batch calls in flight (used when a stage stops)."""
        if self._calls:
            await asyncio.gather(*self._calls, return_exceptions=True)


def _mark_retrieved(future: asyncio.Future[list[Envelope]]) -> None:
    """Mark a result's exception as seen: a waiter that was cancelled never reads it."""
    if not future.cancelled():
        future.exception()
