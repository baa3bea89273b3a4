"""The shared cache: stage results, processed event ids, coalescing leases.

In memory by default (a bounded dict, :mod:`ragbus.runtime.local_cache`); in Redis
through aiocache when ``RAGBUS_CACHE_URL`` is set, so every worker shares it. A cache
outage degrades to no cache — a warning and a metric, never a failed event.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from aiocache import Cache
from aiocache.serializers import JsonSerializer

from ragbus.config.settings import CACHE_MAX_BYTES
from ragbus.runtime.local_cache import LocalCache
from ragbus.runtime.metrics import Metrics

logger = logging.getLogger(__name__)

#: Seconds between two warnings about the same cache outage.
_WARN_EVERY_S = 30.0


class SharedCache:
    """Get, set and add with a TTL; every operation swallows backend errors.

    Parameters:
        url: ``redis://host:port/db`` for Redis; None for a bounded in-memory cache.
        ttl_s: default time to live of an entry, in seconds (default 3600).
        max_bytes: bound of the in-memory cache, in bytes (default
            :data:`~ragbus.config.settings.CACHE_MAX_BYTES`; unused with Redis).
        namespace: prefix of every key (default ``ragbus``).
        metrics: where hits, misses and errors are counted (default: a private set).
        timeout_s: time limit of one cache operation (default 0.5).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        ttl_s: int = 3600,
        max_bytes: int = CACHE_MAX_BYTES,
        namespace: str = "ragbus",
        metrics: Metrics | None = None,
        timeout_s: float = 0.5,
    ) -> None:
        self.url = url
        self.ttl_s = ttl_s
        self.metrics = metrics or Metrics()
        if url:
            self.backend: Any = Cache.from_url(url)
            self.backend.namespace = namespace
            self.backend.serializer = JsonSerializer()
            self.backend.timeout = timeout_s
        else:
            # In process, values are kept as they are (JSON-able lists and dicts that
            # nobody changes) in a dict bounded by bytes.
            self.backend = LocalCache(max_bytes=max_bytes)
        self._last_warning = 0.0

    @property
    def shared(self) -> bool:
        """Whether other processes see this cache (Redis)."""
        return self.url is not None

    async def get(self, key: str, *, stage: str = "") -> Any | None:
        """The value under ``key``, or None (missing, or the cache is down)."""
        try:
            value = await self.backend.get(key)
        except Exception as exc:
            self._outage("get", exc, stage)
            return None
        return value

    async def set(
        self, key: str, value: Any, *, ttl_s: float | None = None, stage: str = ""
    ) -> None:
        """Store ``value`` under ``key`` for ``ttl_s`` seconds (default: the cache's TTL)."""
        try:
            await self.backend.set(key, value, ttl=ttl_s or self.ttl_s)
        except Exception as exc:
            self._outage("set", exc, stage)

    async def add(self, key: str, value: Any, *, ttl_s: float, stage: str = "") -> bool | None:
        """Store ``value`` only if ``key`` is absent (a lease). True if stored, False if the
        key exists, None if the cache is down."""
        try:
            await self.backend.add(key, value, ttl=ttl_s)
        except ValueError:
            return False
        except Exception as exc:
            self._outage("add", exc, stage)
            return None
        return True

    async def delete(self, key: str, *, stage: str = "") -> None:
        """Remove ``key`` if present."""
        try:
            await self.backend.delete(key)
        except Exception as exc:
            self._outage("delete", exc, stage)

    async def close(self) -> None:
        """Release the backend's connections."""
        client = getattr(self.backend, "client", None)
        try:
            if client is not None and hasattr(client, "aclose"):
                await client.aclose()  # redis-py >= 5: close() is deprecated
            else:
                await self.backend.close()
        except Exception as exc:  # closing a dead connection is not worth a failure
            logger.debug("closing the cache failed: %r", exc)

    def _outage(self, operation: str, exc: Exception, stage: str) -> None:
        self.metrics.cache.labels(stage, "error").inc()
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            logger.warning("cache %s failed, going on without the cache: %r", operation, exc)


def normalize_question(text: str) -> str:
    """A question folded for cache keys: case-folded, whitespace collapsed."""
    return " ".join(text.casefold().split())


def input_key(payload: dict[str, Any]) -> str:
    """A stable digest of an input payload: questions normalized, timings left out."""
    canonical = {
        name: normalize_question(value) if name == "question" and isinstance(value, str) else value
        for name, value in payload.items()
        if name != "timings_ms"
    }
    encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


def result_key(stage: str, fingerprint: str, payload: dict[str, Any]) -> str:
    """The cache key of a stage's result: stage, its config fingerprint, the input."""
    return f"result:{stage}:{fingerprint}:{input_key(payload)}"
