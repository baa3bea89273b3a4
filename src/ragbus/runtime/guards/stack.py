"""The guard stack of a runtime, built from the settings (see :mod:`ragbus.runtime.guards`
for the order)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragbus.bus.base import Bus
from ragbus.config import Settings
from ragbus.runtime.cache import SharedCache
from ragbus.runtime.circuit import BreakerConfig
from ragbus.runtime.guards.adaptive import AdaptiveConfig, AdaptiveLimitGuard, LimiterBoard
from ragbus.runtime.guards.breaker import BreakerBoard, BreakerGuard
from ragbus.runtime.guards.cache import ResultCacheGuard
from ragbus.runtime.guards.chain import Middleware
from ragbus.runtime.guards.deadline import DeadlineGuard
from ragbus.runtime.guards.dedup import ProcessedEvents
from ragbus.runtime.guards.rate_limit import CallsPerMinute, RateLimitGuard
from ragbus.runtime.guards.retry import RetryGuard, RetryPolicy
from ragbus.runtime.guards.timeout import TimeoutGuard
from ragbus.runtime.metrics import Metrics


def breaker_config(settings: Settings) -> BreakerConfig:
    """The breaker thresholds and timings of ``settings``."""
    return BreakerConfig(
        failure_rate_threshold=settings.breaker_failure_rate,
        slow_call_rate_threshold=settings.breaker_slow_call_rate,
        slow_call_duration_s=settings.breaker_slow_call_s,
        window_type=settings.breaker_window,
        window_size=settings.breaker_window_size,
        minimum_calls=settings.breaker_minimum_calls,
        open_wait_s=settings.breaker_open_s,
        half_open_calls=settings.breaker_half_open_calls,
    )


def adaptive_configs(settings: Settings) -> dict[str, AdaptiveConfig]:
    """The dependencies whose concurrency adapts, and how (the LM's, unless turned off);
    ``ValueError`` unless min <= start <= max."""
    if not settings.lm_concurrency_adaptive:
        return {}
    config = AdaptiveConfig(
        start=settings.lm_concurrency_start,
        minimum=settings.lm_concurrency_min,
        maximum=settings.lm_concurrency_max,
    )
    return {"lm": config}


@dataclass
class Guards:
    """What the guards of one runtime share: cache, breakers, adaptive limits, rate
    limits, retry policy, dedup set.

    Build it with :meth:`from_settings`; call :meth:`close` when the runtime stops.
    """

    cache: SharedCache
    board: BreakerBoard
    limiters: LimiterBoard
    calls: CallsPerMinute
    retry: RetryPolicy
    processed: ProcessedEvents | None
    metrics: Metrics
    cache_enabled: bool = True
    owner: str = ""

    @classmethod
    def from_settings(cls, settings: Settings, bus: Bus, metrics: Metrics) -> Guards:
        """Guards configured by ``settings``, pausing stages on ``bus``."""
        cache_url = settings.cache_url.get_secret_value() if settings.cache_url else None
        cache = SharedCache(
            cache_url,
            ttl_s=settings.cache_ttl_s,
            max_bytes=settings.cache_max_bytes,
            namespace=settings.cache_namespace,
            metrics=metrics,
            lease_ttl_s=settings.coalesce_lease_s,
        )
        return cls(
            cache=cache,
            board=BreakerBoard(bus, breaker_config(settings), metrics),
            limiters=LimiterBoard(adaptive_configs(settings), metrics),
            calls=CallsPerMinute(
                {"lm": settings.lm_rpm} if settings.lm_rpm else {},
                cache_url=cache_url,
                namespace=settings.cache_namespace,
                tokens_per_minute={"lm": settings.lm_tpm} if settings.lm_tpm else {},
            ),
            retry=RetryPolicy(
                attempts=settings.retry_attempts,
                initial_s=settings.retry_initial_s,
                max_s=settings.retry_max_s,
            ),
            processed=ProcessedEvents(cache) if settings.dedup else None,
            metrics=metrics,
            cache_enabled=settings.cache_enabled,
            owner=settings.worker_id,
        )

    def middlewares(self, extra: Sequence[Middleware] = ()) -> list[Middleware]:
        """A fresh chain of guards for one stage, outermost first.

        Parameters:
            extra: middleware of the pipeline or the user, placed after the outer guards
                (deadline, cache and coalescing) and before the inner ones (retry, rate
                limit, adaptive limit, breaker, timeout), so it sees each call once,
                however often it is retried (default none).
        """
        chain: list[Middleware] = [DeadlineGuard()]
        if self.cache_enabled:
            chain.append(ResultCacheGuard(self.cache, owner=self.owner))
        chain += extra
        chain += [
            RetryGuard(self.retry, self.metrics),
            RateLimitGuard(self.calls),
            AdaptiveLimitGuard(self.limiters),
            BreakerGuard(self.board),
            TimeoutGuard(),
        ]
        return chain

    async def close(self) -> None:
        """Cancel breaker timers and close the cache."""
        self.board.close()
        await self.cache.close()
