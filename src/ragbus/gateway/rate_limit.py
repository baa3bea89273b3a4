"""Requests per client over time, with the ``limits`` library.

The sliding-window-counter strategy: as accurate as a moving window for this purpose,
with two counters per client and limit instead of a timestamp per request. Its counters
live in this process (``async+memory://``) or in Redis (``async+redis://...``), so that
several gateways share one budget per client.
"""

from __future__ import annotations

import logging
import math
import time
from urllib.parse import urlsplit

from limits import RateLimitItem, parse_many
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from ragbus.config.urls import mask_url
from ragbus.errors import ConfigurationError

logger = logging.getLogger(__name__)

#: Storage schemes that use Redis; ragbus drives them with redis-py, a dependency already.
_REDIS_SCHEMES = frozenset({"async+redis", "async+rediss", "async+redis+unix"})


class ClientRateLimit:
    """Counts each client's requests against one or more limits (``20/second;600/minute``).

    :meth:`hit` counts a request and tells how long to wait when a limit is exhausted.
    When the storage fails (Redis unreachable), requests are let through and the outage
    is logged once: a rate limiter that is down must not take the gateway down.

    Parameters:
        limits: the limits in the ``limits`` notation, e.g. ``20/second;600/minute``
            (``RAGBUS_GATEWAY_RATE_LIMIT``).
        storage_uri: where the counters live: ``async+memory://`` or
            ``async+redis://host:port/db`` (``RAGBUS_GATEWAY_RATE_LIMIT_STORAGE``).
        namespace: prefix of the counters' keys in a shared storage (default
            ``ragbus``, the cache namespace: several deployments, one Redis).
    """

    def __init__(self, limits: str, storage_uri: str, *, namespace: str = "ragbus") -> None:
        self.items: list[RateLimitItem] = parse_many(limits)
        scheme = urlsplit(storage_uri).scheme
        options: dict[str, str | bool] = {"wrap_exceptions": True}
        if scheme in _REDIS_SCHEMES:
            options.update(implementation="redispy", key_prefix=f"{namespace}:gateway-rate")
        try:
            storage = storage_from_string(storage_uri, **options)
            self.limiter = SlidingWindowCounterRateLimiter(storage)
        except Exception as exc:  # limits raises its own ConfigurationError, ValueError, ...
            raise ConfigurationError(
                f"RAGBUS_GATEWAY_RATE_LIMIT_STORAGE {mask_url(storage_uri)!r} cannot be "
                f"used: {exc} (use async+memory:// or async+redis://host:6379/0)"
            ) from None
        self._storage_down = False

    def describe(self) -> str:
        """The limits, as configured (``20 per 1 second; 600 per 1 minute``)."""
        return "; ".join(str(item) for item in self.items)

    async def hit(self, client: str) -> float | None:
        """Count one request of ``client``: None when it is within every limit, else the
        seconds until it would be (at least 1).

        Parameters:
            client: the client's key (see :func:`ragbus.gateway.clients.client_key`).
        """
        try:
            for item in self.items:
                if not await self.limiter.hit(item, client):
                    stats = await self.limiter.get_window_stats(item, client)
                    return max(1.0, math.ceil(stats.reset_time - time.time()))
        except StorageError as exc:
            if not self._storage_down:
                logger.warning("rate limits not enforced: their storage failed: %r", exc)
                self._storage_down = True
            return None
        if self._storage_down:
            logger.warning("rate limits enforced again: their storage answers")
            self._storage_down = False
        return None
