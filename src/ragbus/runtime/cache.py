"""The shared cache: stage results, processed event ids, coalescing leases.

In memory by default (a dict bounded by bytes, :mod:`ragbus.runtime.local_cache`); in
Redis through aiocache when ``RAGBUS_CACHE_URL`` is set, so every worker shares it, with
leases renewed while held (:mod:`ragbus.runtime.lease`). A cache outage degrades to no
cache — a warning and a metric, never a failed event.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from ragbus.config.settings import CACHE_MAX_BYTES
from ragbus.runtime.lease import DEFAULT_LEASE_TTL_S, LeaseOutcome, RedisLeases
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
        lease_ttl_s: how long a coalescing lease outlives a holder that died; it is
            renewed every third of this while held (default 3; Redis only).
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
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
    ) -> None:
        # The URL holds a password: it is handed to the clients and not kept here.
        self.ttl_s = ttl_s
        self.metrics = metrics or Metrics()
        self.leases: RedisLeases | None = None
        if url:
            # here: aiocache brings redis-py, which a process without Redis never needs
            from aiocache import Cache
            from aiocache.serializers import JsonSerializer

            self.backend: Any = Cache.from_url(url)
            self.backend.namespace = namespace
            self.backend.serializer = JsonSerializer()
            self.backend.timeout = timeout_s
            self.leases = RedisLeases(
                url,
                namespace=namespace,
                ttl_s=lease_ttl_s,
                timeout_s=timeout_s,
                on_error=lambda exc: self._outage("renew", exc, stage=""),
            )
        else:
            # In process, values are kept as they are (JSON-able lists and dicts that
            # nobody changes) in a dict bounded by bytes.
            self.backend = LocalCache(max_bytes=max_bytes)
        self._last_warning = 0.0

    @property
    def shared(self) -> bool:
        """Whether other processes see this cache (Redis)."""
        return self.leases is not None

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

    async def delete(self, key: str, *, stage: str = "") -> None:
        """Remove ``key`` if present."""
        try:
            await self.backend.delete(key)
        except Exception as exc:
            self._outage("delete", exc, stage)

    @contextlib.asynccontextmanager
    async def lease(
        self, name: str, *, owner: str = "", stage: str = ""
    ) -> AsyncIterator[LeaseOutcome]:
        """Try to take the coalescing lease ``name`` for the block: ``TAKEN`` (held and
        renewed until the block ends, then released), ``HELD`` by another worker, or
        ``UNAVAILABLE`` (Redis is down: go on without coalescing). Without Redis, no
        other process competes: always ``TAKEN``.

        Parameters:
            name: the lease's name.
            owner: this worker's name, written into the lease.
            stage: the stage, for the error metric.
        """
        if self.leases is None:
            yield LeaseOutcome.TAKEN
            return
        try:
            token = await self.leases.acquire(name, owner=owner)
        except Exception as exc:
            self._outage("lease", exc, stage)
            yield LeaseOutcome.UNAVAILABLE
            return
        if token is None:
            yield LeaseOutcome.HELD
            return
        try:
            yield LeaseOutcome.TAKEN
        finally:
            try:
                await self.leases.release(name, token)
            except Exception as exc:  # it ends by itself within its time to live
                self._outage("release", exc, stage)

    async def lease_held(self, name: str, *, stage: str = "") -> bool | None:
        """Whether another worker holds the lease ``name`` (None if Redis is down)."""
        if self.leases is None:
            return False
        try:
            return await self.leases.is_held(name)
        except Exception as exc:
            self._outage("lease", exc, stage)
            return None

    async def close(self) -> None:
        """Stop renewing leases and release the backend's connections."""
        if self.leases is not None:
            try:
                await self.leases.close()
            except Exception as exc:
                logger.debug("closing the lease store failed: %r", exc)
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


#: The canonical JSON of a key's input, made once: ``json.dumps`` with these options
#: builds an encoder per call, which cost more than encoding a question. The same text
#: as ``json.dumps(canonical, sort_keys=True, separators=(",", ":"))``, so keys stay
#: what they were (the circular-reference check only guards against a payload that
#: holds itself, which a decoded JSON payload cannot).
_KEY_JSON: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)


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
    return hashlib.sha256(_KEY_JSON.encode(canonical).encode()).hexdigest()


def result_key(stage: str, fingerprint: str, payload: dict[str, Any]) -> str:
    """The cache key of a stage's result: stage, its config fingerprint, the input."""
    return f"result:{stage}:{fingerprint}:{input_key(payload)}"
