"""The guards around every stage's handler: an open stack, one file per guard.

Order, outermost first (``docs/guards.md`` has each guard's settings)::

    delivery
      decode + validate      decode.py      bad bytes -> DLQ "invalid"
      dedup                  dedup.py       a finished event id -> dropped
    -- the chain (middleware: __call__(stage, envelope, call_next)) --------
      deadline               deadline.py    passed -> DLQ "expired"
      cache + coalescing     cache.py       hit -> answer; same input in flight -> share
      [your middleware]      Client(middleware=...), Host(middleware=...)
      retry                  retry.py       transient -> retried in process
      rate limit             rate_limit.py  calls per minute of the dependency
      adaptive limit         adaptive.py    in-flight calls of the dependency
      breaker                breaker.py     open -> stage paused, event requeued
      timeout                timeout.py     min(stage timeout, deadline)
        handler
    ---------------------------------------------------------------------------
      publish outputs (confirmed) -> mark processed -> ack -> metrics
      on failure: ragbus.runtime.redelivery (redeliver, DLQ or requeue)

The slot between the outer guards (deadline, cache) and the inner ones (retry and
below) is for the pipeline's and the user's own middleware: it sees each event once,
after the cache missed, however often the inner guards retry the call.
"""

from ragbus.runtime.guards.adaptive import (
    AdaptiveConfig,
    AdaptiveLimit,
    AdaptiveLimitGuard,
    LimiterBoard,
)
from ragbus.runtime.guards.breaker import BreakerBoard, BreakerGuard
from ragbus.runtime.guards.cache import ResultCacheGuard
from ragbus.runtime.guards.chain import Middleware, build_chain
from ragbus.runtime.guards.deadline import DeadlineGuard, EventExpired
from ragbus.runtime.guards.decode import decode_for
from ragbus.runtime.guards.dedup import ProcessedEvents
from ragbus.runtime.guards.rate_limit import CallsPerMinute, RateLimitGuard
from ragbus.runtime.guards.retry import RetryGuard, RetryPolicy
from ragbus.runtime.guards.stack import Guards, breaker_config
from ragbus.runtime.guards.timeout import TimeoutGuard

__all__ = [
    "AdaptiveConfig",
    "AdaptiveLimit",
    "AdaptiveLimitGuard",
    "BreakerBoard",
    "BreakerGuard",
    "CallsPerMinute",
    "DeadlineGuard",
    "EventExpired",
    "Guards",
    "LimiterBoard",
    "Middleware",
    "ProcessedEvents",
    "RateLimitGuard",
    "ResultCacheGuard",
    "RetryGuard",
    "RetryPolicy",
    "TimeoutGuard",
    "breaker_config",
    "build_chain",
    "decode_for",
]
