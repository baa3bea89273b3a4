"""Compute each result once: cache lookup, single flight in a process, a lease across
processes, then store.

Identical inputs (same stage, same configuration fingerprint, same normalized input)
share one handler call: later ones hit the cache; concurrent ones in this process wait
for the one in flight; with a shared (Redis) cache, concurrent ones in other workers
wait while the lease holder computes, then read its result. The lease is renewed while
its holder computes and lapses seconds after a holder dies
(:mod:`ragbus.runtime.lease`), so a killed worker delays the questions it held by that
much, not by a fixed lease time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from ragbus.events import Envelope, utc_now
from ragbus.json_input import parse_json
from ragbus.runtime.cache import SharedCache, result_key
from ragbus.runtime.guards.breaker import SERVED_BY_FALLBACK
from ragbus.runtime.guards.deadline import EventExpired, expired
from ragbus.runtime.lease import LeaseOutcome
from ragbus.runtime.metrics import Metrics
from ragbus.runtime.stage import Handler, Stage

logger = logging.getLogger(__name__)

#: What is cached: the outputs as a JSON array of their envelopes, each in the encoding
#: its hop publishes anyway (no second encoding). Text, so a cache full of results gives
#: the garbage collector nothing to walk and the in-process cache's size is its length.
CachedOutputs = str

#: Ends the key of every cached result: results were kept as lists of dicts before they
#: were kept as text, and a worker of either kind sharing a Redis cache with the other
#: must not read what it cannot (so a rolling upgrade only starts the cache afresh).
KEY_SUFFIX: Final = ":json"


def to_cached(outputs: list[Envelope]) -> CachedOutputs:
    """``outputs`` as they are cached."""
    return "[" + ",".join(output.encode().decode() for output in outputs) + "]"


def from_cached(envelope: Envelope, cached: CachedOutputs) -> list[Envelope]:
    """Outputs of ``envelope`` rebuilt from a cached result: their own ids, correlation
    and causation, the cached types and payloads."""
    items: list[dict[str, Any]] = parse_json(cached)
    return [envelope.derive(item["type"], item["payload"]) for item in items]


class ResultCacheGuard:
    """Serves repeated inputs from the cache and lets identical concurrent inputs share
    one call.

    Parameters:
        cache: the shared cache (its leases' time to live is set there).
        owner: this worker's name, written into leases (default "").
        poll_s: how often a waiter checks for the lease holder's result, and whether the
            holder still holds its lease (default 0.05).
        metrics: counts hits, misses and coalesced calls (default: the cache's).
    """

    def __init__(
        self,
        cache: SharedCache,
        *,
        owner: str = "",
        poll_s: float = 0.05,
        metrics: Metrics | None = None,
    ) -> None:
        self.cache = cache
        self.owner = owner
        self.poll_s = poll_s
        self.metrics = metrics or cache.metrics
        self._in_flight: dict[str, asyncio.Future[CachedOutputs]] = {}
        # label lookups cost more than the updates: each (stage, result) series is bound once
        self._counters: dict[tuple[str, str], Any] = {}

    def _count(self, stage: str, result: str) -> None:
        counter = self._counters.get((stage, result))
        if counter is None:
            counter = self._counters[stage, result] = self.metrics.cache.labels(stage, result)
        counter.inc()

    async def __call__(
        self, stage: Stage, envelope: Envelope, call_next: Handler
    ) -> list[Envelope]:
        if not stage.cacheable:
            return await call_next(envelope)
        key = result_key(stage.name, stage.fingerprint, envelope.payload) + KEY_SUFFIX
        cached = await self.cache.get(key, stage=stage.name)
        if cached is not None:
            self._count(stage.name, "hit")
            return from_cached(envelope, cached)
        leader = self._in_flight.get(key)
        if leader is not None:
            self._count(stage.name, "coalesced")
        while leader is not None:
            try:
                return from_cached(envelope, await _follow(envelope, leader))
            except EventExpired:
                if envelope.is_expired():
                    raise
                # the leader ran out of its own time, not of this event's: take over
                leader = self._in_flight.get(key)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                # the leader was stopped (its request was cancelled), not this one
                leader = self._in_flight.get(key)
        self._count(stage.name, "miss")
        future: asyncio.Future[CachedOutputs] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume_exception)
        self._in_flight[key] = future
        try:
            result, cached = await self._compute_once(stage, envelope, call_next, key)
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            raise
        finally:
            self._in_flight.pop(key, None)
        future.set_result(cached)
        return result

    async def _store(
        self, stage: Stage, key: str, outputs: list[Envelope]
    ) -> tuple[list[Envelope], CachedOutputs]:
        """Cache ``outputs``, unless a fallback made them (a degraded answer is not kept
        under the primary's key); ``outputs`` with their cached form, which the calls
        waiting for them in this process share."""
        cached = to_cached(outputs)  # once: for the cache and for the waiting calls
        if SERVED_BY_FALLBACK.get():
            SERVED_BY_FALLBACK.set(False)
        else:
            await self.cache.set(key, cached, stage=stage.name)
        return outputs, cached

    async def _compute_once(
        self, stage: Stage, envelope: Envelope, call_next: Handler, key: str
    ) -> tuple[list[Envelope], CachedOutputs]:
        """The outputs for ``envelope`` (computed here, or by the lease holder in
        another process) with their cached form."""
        if not self.cache.shared:
            return await self._store(stage, key, await call_next(envelope))
        lease = f"lease:{key}"
        while True:
            async with self.cache.lease(lease, owner=self.owner, stage=stage.name) as outcome:
                if outcome is not LeaseOutcome.HELD:  # ours (renewed), or Redis is down
                    # a holder may have stored its result and let go since we looked
                    if outcome is LeaseOutcome.TAKEN:
                        cached = await self.cache.get(key, stage=stage.name)
                        if cached is not None:
                            self._count(stage.name, "coalesced")
                            return from_cached(envelope, cached), cached
                    return await self._store(stage, key, await call_next(envelope))
            # another worker computes it: wait for its result, or for its lease to end
            # (it failed, or died and stopped renewing)
            while True:
                await asyncio.sleep(self.poll_s)
                if envelope.is_expired():
                    raise expired(envelope)
                cached = await self.cache.get(key, stage=stage.name)
                if cached is not None:
                    self._count(stage.name, "coalesced")
                    return from_cached(envelope, cached), cached
                if not await self.cache.lease_held(lease, stage=stage.name):
                    break  # try to take over (or compute, if Redis went down)


async def _follow(envelope: Envelope, leader: asyncio.Future[CachedOutputs]) -> CachedOutputs:
    """The leader's result, waited for no longer than ``envelope``'s own deadline
    (:class:`EventExpired` then)."""
    left = None if envelope.deadline is None else (envelope.deadline - utc_now()).total_seconds()
    try:
        async with asyncio.timeout(left):
            return await asyncio.shield(leader)
    except TimeoutError:
        if envelope.is_expired():
            raise expired(envelope) from None
        raise


def _consume_exception(future: asyncio.Future[CachedOutputs]) -> None:
    """Mark a leader's failure as seen, so followers-less failures log no warning."""
    if not future.cancelled():
        future.exception()
