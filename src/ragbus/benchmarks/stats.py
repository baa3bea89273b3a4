"""Throughput and latency figures of one benchmark run."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class BenchConfig:
    """What a benchmark run does.

    Parameters:
        queries: questions to answer (default 2000).
        concurrency: questions in flight at once, and each stage's concurrency (default 100).
        lm_latency_ms: simulated LM delay per generate call (default 0).
    """

    queries: int = 2000
    concurrency: int = 100
    lm_latency_ms: float = 0.0

    @property
    def ideal_qps(self) -> float | None:
        """concurrency / LM latency: the best a pipeline bound by the LM can do."""
        if self.lm_latency_ms <= 0:
            return None
        return self.concurrency / (self.lm_latency_ms / 1000)


@dataclass(frozen=True)
class BenchResult:
    """Figures of one contender in a run."""

    name: str
    queries: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int = 0

    @property
    def qps(self) -> float:
        """Answered queries per second."""
        return (self.queries - self.errors) / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, float | int | str]:
        """The figures as plain JSON-able values, with ``qps``."""
        return {**asdict(self), "qps": round(self.qps, 1)}


def summarize(name: str, latencies_s: list[float], seconds: float, errors: int = 0) -> BenchResult:
    """A :class:`BenchResult` from per-query latencies (seconds) and the wall time."""
    ordered = sorted(latencies_s) or [0.0]
    p99_index = min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))
    return BenchResult(
        name=name,
        queries=len(latencies_s) + errors,
        seconds=seconds,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[p99_index] * 1000,
        errors=errors,
    )
