"""What a runtime says about its stages: the per-stage counters of a heartbeat.

Everything is read from the runtime's Prometheus registry (the same numbers
``/metrics`` exports) and its breakers, so the status view and the dashboards never
disagree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ragbus.runtime.circuit import BreakerState
from ragbus.runtime.classify import FailureClass
from ragbus.runtime.runner import Runtime
from ragbus.runtime.stage import Stage


def concurrency_limit(runtime: Runtime, stage: Stage) -> int:
    """The number of events ``stage`` may handle at once in ``runtime`` right now: the
    current adaptive limit of its dependency (``RAGBUS_LM_CONCURRENCY_*``) where that
    dependency is limited and has been called, never more than the stage's concurrency;
    else the stage's concurrency.

    Parameters:
        runtime: the runtime serving the stage.
        stage: the stage.
    """
    if stage.dependency is None:
        return stage.concurrency
    adaptive = runtime.guards.limiters.limits().get(stage.dependency)
    return stage.concurrency if adaptive is None else min(adaptive, stage.concurrency)


def breaker_state_name(state: BreakerState) -> str:
    """``closed``, ``half_open`` or ``open``."""
    return state.name.lower()


@dataclass
class StageCounters:
    """Reads one runtime's per-stage counters and turns totals into rates.

    Parameters:
        runtime: the runtime to read.
        clock: monotonic seconds (default ``time.monotonic``).
    """

    runtime: Runtime
    clock: Callable[[], float] = time.monotonic
    _last: dict[str, tuple[float, float]] = field(default_factory=dict)

    def _sample(self, name: str, labels: dict[str, str]) -> float:
        value = self.runtime.metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    def breakers(self) -> dict[str, str]:
        """Each dependency's breaker state in this runtime."""
        board = self.runtime.guards.board
        return {name: breaker_state_name(b.state) for name, b in board.breakers.items()}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per stage: ``in_flight``, ``processed`` (total), ``processed_per_s`` (since
        the previous snapshot; 0 on the first), ``failed`` by failure class (totals),
        ``concurrency_limit``, ``dependency``, ``breaker`` (its state, or None) and
        ``paused`` (its breaker is open, so it takes no events)."""
        now = self.clock()
        board = self.runtime.guards.board
        stats: dict[str, dict[str, Any]] = {}
        for stage in self.runtime.stages:
            labels = {"stage": stage.name}
            processed = self._sample("ragbus_processed_total", labels)
            before = self._last.get(stage.name)
            rate = 0.0
            if before is not None and now > before[0]:
                rate = max(0.0, processed - before[1]) / (now - before[0])
            self._last[stage.name] = (now, processed)
            breaker = board.breakers.get(stage.dependency) if stage.dependency else None
            # a breaker is made at its stage's first call: until then it is closed
            state = breaker.state if breaker is not None else None
            if state is None and stage.dependency is not None:
                state = BreakerState.CLOSED
            stats[stage.name] = {
                "in_flight": int(self._sample("ragbus_in_flight", labels)),
                "processed": int(processed),
                "processed_per_s": round(rate, 3),
                "failed": {
                    failure.value: int(
                        self._sample(
                            "ragbus_failed_total",
                            {"stage": stage.name, "failure_class": failure.value},
                        )
                    )
                    for failure in FailureClass
                },
                "concurrency_limit": concurrency_limit(self.runtime, stage),
                "dependency": stage.dependency,
                "breaker": breaker_state_name(state) if state is not None else None,
                "paused": state is BreakerState.OPEN,
            }
        return stats
