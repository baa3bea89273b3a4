"""Throughput and latency figures of one benchmark run."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, fields
from typing import Any

from ragbus.config import BusKind


def ragbus_name(bus: BusKind) -> str:
    """The name of the ragbus contender on ``bus`` in results."""
    return f"ragbus ({bus.value} bus)"


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
    """Figures of one contender in a run.

    Parameters:
        name: the contender.
        queries: questions asked (answered + errors).
        seconds: wall time of the timed part.
        p50_ms, p99_ms: latency percentiles of the answered questions.
        errors: questions that failed or timed out (default 0).
        cpu_s: CPU seconds used meanwhile by the pipeline's processes: the benchmark
            process (load generator included) plus any worker processes (default None:
            not measured).
        broker_cpu_s: CPU seconds used meanwhile by the local broker (default None: not
            measured, or no broker).
    """

    name: str
    queries: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    cpu_s: float | None = None
    broker_cpu_s: float | None = None

    @property
    def qps(self) -> float:
        """Answered queries per second."""
        return (self.queries - self.errors) / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_query(self) -> float | None:
        """Pipeline CPU milliseconds per question, when measured."""
        return None if self.cpu_s is None else self.cpu_s * 1000 / max(self.queries, 1)

    @property
    def broker_cpu_ms_per_query(self) -> float | None:
        """Broker CPU milliseconds per question, when measured."""
        if self.broker_cpu_s is None:
            return None
        return self.broker_cpu_s * 1000 / max(self.queries, 1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        """A result from :meth:`as_dict`'s output (derived figures are ignored)."""
        names = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def as_dict(self) -> dict[str, float | int | str | None]:
        """The figures as plain JSON-able values, with ``qps`` and CPU per query."""
        return {
            **asdict(self),
            "qps": round(self.qps, 1),
            "cpu_ms_per_query": _rounded(self.cpu_ms_per_query),
            "broker_cpu_ms_per_query": _rounded(self.broker_cpu_ms_per_query),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summarize(
    name: str,
    latencies_s: list[float],
    seconds: float,
    errors: int = 0,
    *,
    cpu_s: float | None = None,
    broker_cpu_s: float | None = None,
) -> BenchResult:
    """A :class:`BenchResult` from per-query latencies (seconds) and the wall time.

    Parameters:
        name: the contender.
        latencies_s: latency of each answered question, in seconds.
        seconds: wall time of the run.
        errors: questions that failed (default 0).
        cpu_s, broker_cpu_s: CPU seconds used meanwhile (default None: not measured).
    """
    ordered = sorted(latencies_s) or [0.0]
    p99_index = min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))
    return BenchResult(
        name=name,
        queries=len(latencies_s) + errors,
        seconds=seconds,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[p99_index] * 1000,
        errors=errors,
        cpu_s=cpu_s,
        broker_cpu_s=broker_cpu_s,
    )
