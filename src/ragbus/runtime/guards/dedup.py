"""The processed-event-id set: a redelivered event a stage already finished is dropped."""

from __future__ import annotations

import uuid

from ragbus.runtime.cache import SharedCache

#: How long a processed id is remembered (seconds): longer than any redelivery takes.
DEFAULT_REMEMBER_S = 24 * 3600


class ProcessedEvents:
    """Remembers which events each stage finished, in the shared cache.

    Parameters:
        cache: where ids are kept (shared by every worker when it is Redis).
        remember_s: how long an id is kept (default one day).
    """

    def __init__(self, cache: SharedCache, *, remember_s: int = DEFAULT_REMEMBER_S) -> None:
        self.cache = cache
        self.remember_s = remember_s

    @staticmethod
    def _key(stage: str, event_id: uuid.UUID) -> str:
        return f"done:{stage}:{event_id}"

    async def seen(self, stage: str, event_id: uuid.UUID) -> bool:
        """Whether ``stage`` already finished ``event_id`` (False if the cache is down)."""
        return await self.cache.get(self._key(stage, event_id), stage=stage) is not None

    async def mark(self, stage: str, event_id: uuid.UUID) -> None:
        """Record that ``stage`` finished ``event_id`` (its outputs are confirmed)."""
        await self.cache.set(self._key(stage, event_id), 1, ttl_s=self.remember_s, stage=stage)
