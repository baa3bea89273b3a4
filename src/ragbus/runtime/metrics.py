"""Prometheus metrics of the stages a process runs (one registry per runtime)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The counters, gauges and histograms ragbus exports.

    Parameters:
        registry: where to register them (default: a new private registry, so several
            runtimes in one process do not collide).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # multiprocess_mode: how `ragbus worker --processes N` sums its workers' gauges
        # (ignored in a single process); "live" drops the values of a dead process.
        self.in_flight = Gauge(
            "ragbus_in_flight",
            "Events being handled",
            ["stage"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.consuming = Gauge(
            "ragbus_worker_consuming",
            "Worker processes consuming their stages",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.processed = Counter(
            "ragbus_processed", "Events handled successfully", ["stage"], registry=r
        )
        self.failed = Counter(
            "ragbus_failed", "Handler failures, by class", ["stage", "failure_class"], registry=r
        )
        self.retried = Counter(
            "ragbus_retried", "Retries (in-process and redeliveries)", ["stage", "kind"], registry=r
        )
        self.dead_lettered = Counter(
            "ragbus_dead_lettered", "Events sent to the DLQ", ["stage", "reason"], registry=r
        )
        self.duplicates = Counter(
            "ragbus_duplicates_dropped", "Redelivered events dropped", ["stage"], registry=r
        )
        self.latency = Histogram(
            "ragbus_handler_seconds",
            "Time from delivery to outputs published",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.breaker_state = Gauge(
            "ragbus_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            ["dependency"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.concurrency_limit = Gauge(
            "ragbus_concurrency_limit",
            "Adaptive limit of calls in flight to a dependency, per process",
            ["dependency"],
            registry=r,
        )
        self.cache = Counter(
            "ragbus_cache", "Cache lookups and errors", ["stage", "result"], registry=r
        )

    def render(self) -> bytes:
        """The metrics in Prometheus's text format."""
        return generate_latest(self.registry)
