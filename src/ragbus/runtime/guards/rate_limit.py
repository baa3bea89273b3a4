"""The rate limit guard: calls to a dependency per minute, from its API quota.

An LM API sells a quota ("120 requests per minute"); going over it costs 429s and,
with some providers, a ban. ``RAGBUS_LM_RPM`` sets it: every call to the LM (each
retry included, as the provider counts them) first takes a place in two moving
windows, and waits for one when either is full:

- ``ceil(rpm / 60)`` calls per second ("60 RPM -> 1 per second"), so the quota is
  spent evenly, not in a burst at the start of each minute;
- ``rpm`` calls per :data:`WINDOW_S` seconds: the provider's minute plus the time a
  call may take to reach it, so that the provider, counting arrivals, never sees
  more than ``rpm`` in any 60 s either.
 With ``RAGBUS_CACHE_URL`` (Redis) the window is shared by
every worker of the deployment (the ``limits`` library's moving window in Redis, one
sorted list per dependency under the cache namespace); without it, each process has
its own.

A wait ends at the event's deadline (the event then expires, to the DLQ as
``expired``). When Redis fails, calls go through and the outage is logged once: a
limiter that is down must not stop the pipeline.

Settings: ``RAGBUS_LM_RPM`` (default unset: no limit).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from urllib.parse import urlsplit

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from ragbus.events import Envelope, utc_now
from ragbus.runtime.guards.deadline import expired
from ragbus.runtime.stage import Handler, Stage

logger = logging.getLogger(__name__)

#: The minute window, in seconds: 60 and a margin for the calls' way to the provider
#: (measured: under load the calls of three workers reach the LM up to ~2 s apart from
#: the order they took their places in).
WINDOW_S = 63

#: Shortest wait before asking the window again, in seconds (a full window frees a
#: place only when its oldest call turns 60 s old).
MIN_WAIT_S = 0.05


def storage_uri(cache_url: str | None) -> str:
    """The ``limits`` storage of a cache URL: Redis when it is one, else this process.

    Parameters:
        cache_url: ``redis://...`` or ``rediss://...`` (``RAGBUS_CACHE_URL``), or None.
    """
    if cache_url is None:
        return "async+memory://"
    scheme = urlsplit(cache_url).scheme
    return f"async+{scheme}{cache_url[len(scheme) :]}"


class CallsPerMinute:
    """A moving window of calls per minute for each limited dependency.

    Parameters:
        per_minute: calls allowed in any 60 s, by dependency (e.g. ``{"lm": 120}``).
        cache_url: Redis to share the windows through (default None: this process).
        namespace: prefix of the windows' keys in Redis (default ``ragbus``).
    """

    def __init__(
        self, per_minute: dict[str, int], *, cache_url: str | None = None, namespace: str = "ragbus"
    ) -> None:
        self.items: dict[str, tuple[RateLimitItem, ...]] = {
            name: (
                RateLimitItemPerSecond(math.ceil(count / 60)),
                RateLimitItemPerSecond(count, WINDOW_S),
            )
            for name, count in per_minute.items()
        }
        self.shared = cache_url is not None
        options: dict[str, str | bool] = {"wrap_exceptions": True}
        if self.shared:
            options.update(implementation="redispy", key_prefix=f"{namespace}:rate")
        self.limiter = MovingWindowRateLimiter(
            storage_from_string(storage_uri(cache_url), **options)
        )
        self._storage_down = False

    def limits(self, dependency: str | None) -> bool:
        """Whether calls to ``dependency`` are limited."""
        return dependency in self.items

    async def wait_s(self, dependency: str) -> float:
        """Take a place in ``dependency``'s windows: 0 when taken, else the seconds until
        one may be free."""
        try:
            # the second's window first: a place taken there and then not used costs a
            # fraction of a second; one in the minute's window would cost a minute's
            reset_at = 0.0
            for item in self.items[dependency]:
                if not await self.limiter.hit(item, dependency):
                    reset_at = (await self.limiter.get_window_stats(item, dependency))[0]
                    break
        except StorageError as exc:
            if not self._storage_down:
                logger.warning("rate limit of %s not enforced: Redis failed: %r", dependency, exc)
            self._storage_down = True
            return 0.0
        if self._storage_down:
            logger.warning("rate limit of %s enforced again: Redis answers", dependency)
            self._storage_down = False
        if not reset_at:
            return 0.0
        # jittered, so that waiters of several workers do not all ask at the same instant
        return max(MIN_WAIT_S, reset_at - time.time()) * random.uniform(1.0, 1.1)


class RateLimitGuard:
    """Holds each call to a limited dependency until its window has a place.

    Parameters:
        calls: the windows of the runtime.
    """

    def __init__(self, calls: CallsPerMinute) -> None:
        self.calls = calls

    async def __call__(
        self, stage: Stage, envelope: Envelope, call_next: Handler
    ) -> list[Envelope]:
        dependency = stage.dependency
        if dependency is None or not self.calls.limits(dependency):
            return await call_next(envelope)
        while (wait := await self.calls.wait_s(dependency)) > 0:
            if envelope.deadline is not None:
                left = (envelope.deadline - utc_now()).total_seconds()
                if left <= wait:
                    await asyncio.sleep(max(0.0, left))
                    raise expired(envelope)
            await asyncio.sleep(wait)
        return await call_next(envelope)
