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

``RAGBUS_LM_TPM`` sets the tokens per minute, where the LM reports its usage (the
generate stage and DSPy stages report what DSPy's usage tracker saw): a call waits
while the current minute's tokens are spent, and adds its own once it is answered. The
tokens of a call are known only after it, so they are counted in fixed one-minute
windows (a counter that always adds: a moving window refuses a cost larger than what
is left, and that would lose the overshoot); the calls in flight when the budget runs
out may pass it by their own tokens.

A wait ends at the event's deadline (the event then expires, to the DLQ as
``expired``). When Redis fails, calls go through and the outage is logged once: a
limiter that is down must not stop the pipeline.

Settings: ``RAGBUS_LM_RPM``, ``RAGBUS_LM_TPM`` (default unset: no limit).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from urllib.parse import urlsplit

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from ragbus.events import Envelope, utc_now
from ragbus.runtime.guards.deadline import expired
from ragbus.runtime.stage import Handler, Stage
from ragbus.usage import counting_tokens

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
    """The windows of calls (moving) and tokens (fixed) per minute of each limited
    dependency.

    Parameters:
        per_minute: calls allowed in any 60 s, by dependency (e.g. ``{"lm": 120}``).
        cache_url: Redis to share the windows through (default None: this process).
        namespace: prefix of the windows' keys in Redis (default ``ragbus``).
        tokens_per_minute: tokens allowed per minute, by dependency (default none).
    """

    def __init__(
        self,
        per_minute: dict[str, int],
        *,
        cache_url: str | None = None,
        namespace: str = "ragbus",
        tokens_per_minute: dict[str, int] | None = None,
    ) -> None:
        self.items: dict[str, tuple[RateLimitItem, ...]] = {
            name: (
                RateLimitItemPerSecond(math.ceil(count / 60)),
                RateLimitItemPerSecond(count, WINDOW_S),
            )
            for name, count in per_minute.items()
        }
        self.token_items = {
            name: RateLimitItemPerMinute(count) for name, count in (tokens_per_minute or {}).items()
        }
        # no limit, no Redis connection
        self.shared = cache_url is not None and bool(self.items or self.token_items)
        options: dict[str, str | bool] = {"wrap_exceptions": True}
        if self.shared:
            options.update(implementation="redispy", key_prefix=f"{namespace}:rate")
        storage = storage_from_string(storage_uri(cache_url if self.shared else None), **options)
        self.limiter = MovingWindowRateLimiter(storage)
        self.token_limiter = FixedWindowRateLimiter(storage)
        self._storage_down = False

    def limits(self, dependency: str | None) -> bool:
        """Whether calls to ``dependency`` are limited."""
        return dependency in self.items or dependency in self.token_items

    async def wait_s(self, dependency: str) -> float:
        """Take a place in ``dependency``'s windows: 0 when taken (and the minute's
        tokens are not spent), else the seconds until one may be free."""
        try:
            # the second's window first: a place taken there and then not used costs a
            # fraction of a second; one in the minute's window would cost a minute's
            reset_at = 0.0
            for item in self.items.get(dependency, ()):
                if not await self.limiter.hit(item, dependency):
                    reset_at = (await self.limiter.get_window_stats(item, dependency))[0]
                    break
            tokens = self.token_items.get(dependency)
            if not reset_at and tokens is not None:
                stats = await self.token_limiter.get_window_stats(tokens, dependency)
                reset_at = stats.reset_time if stats.remaining <= 0 else 0.0
        except StorageError as exc:
            self._down(dependency, exc)
            return 0.0
        self._up(dependency)
        if not reset_at:
            return 0.0
        # jittered, so that waiters of several workers do not all ask at the same instant
        return max(MIN_WAIT_S, reset_at - time.time()) * random.uniform(1.0, 1.1)

    async def spend_tokens(self, dependency: str, count: int) -> None:
        """Count ``count`` tokens a call to ``dependency`` used (if its tokens are
        limited)."""
        item = self.token_items.get(dependency)
        if item is None or count <= 0:
            return
        try:
            await self.token_limiter.hit(item, dependency, cost=count)
        except StorageError as exc:
            self._down(dependency, exc)
            return
        self._up(dependency)

    def _down(self, dependency: str, exc: Exception) -> None:
        if not self._storage_down:
            logger.warning("rate limit of %s not enforced: Redis failed: %r", dependency, exc)
        self._storage_down = True

    def _up(self, dependency: str) -> None:
        if self._storage_down:
            logger.warning("rate limit of %s enforced again: Redis answers", dependency)
            self._storage_down = False


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
        with counting_tokens() as used:
            try:
                return await call_next(envelope)
            finally:  # a failed call may have used tokens too
                await self.calls.spend_tokens(dependency, sum(used))
