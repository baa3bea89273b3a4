"""A circuit breaker with resilience4j's semantics, one per dependency (LM, retriever).

CLOSED: calls pass; outcomes fill a sliding window (the last N calls, or the calls of
the last N seconds). Once the window holds ``minimum_calls``, the breaker OPENs when
the failure rate or the slow-call rate reaches its threshold.
OPEN: calls are refused for ``open_wait_s``; then HALF_OPEN.
HALF_OPEN: ``half_open_calls`` probes pass; when all have finished, the breaker
CLOSEs if their failure and slow rates are under the thresholds, else OPENs again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

logger = logging.getLogger(__name__)


class BreakerState(IntEnum):
    """Breaker states; the value is what the state metric exports."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True)
class BreakerConfig:
    """How a breaker judges its dependency.

    Parameters:
        failure_rate_threshold: percentage of failed calls that opens it (default 50).
        slow_call_rate_threshold: percentage of slow calls that opens it (default 100).
        slow_call_duration_s: a call at least this long is slow (default 30).
        window_type: ``count`` (the last ``window_size`` calls) or ``time`` (the calls of
            the last ``window_size`` seconds) (default ``count``).
        window_size: calls or seconds in the window (default 20).
        minimum_calls: calls needed before rates are judged (default 10).
        open_wait_s: how long it stays open before probing (default 1).
        half_open_calls: probes allowed while half-open (default 3).
    """

    failure_rate_threshold: float = 50.0
    slow_call_rate_threshold: float = 100.0
    slow_call_duration_s: float = 30.0
    window_type: str = "count"
    window_size: int = 20
    minimum_calls: int = 10
    open_wait_s: float = 1.0
    half_open_calls: int = 3

    def __post_init__(self) -> None:
        if self.window_type not in {"count", "time"}:
            raise ValueError("window_type is 'count' or 'time'")
        if self.window_size < 1 or self.minimum_calls < 1 or self.half_open_calls < 1:
            raise ValueError("window_size, minimum_calls and half_open_calls must be >= 1")


@dataclass(frozen=True, slots=True)
class _Outcome:
    at: float
    failed: bool
    slow: bool


#: Called with (breaker name, old state, new state) on every transition.
StateListener = Callable[[str, BreakerState, BreakerState], None]


class CircuitBreaker:
    """A breaker for one dependency.

    Parameters:
        name: the dependency's name (``lm``, ``retriever``), used in logs and metrics.
        config: thresholds and timings (default :class:`BreakerConfig()`).
        clock: monotonic time source in seconds (default ``time.monotonic``; tests pass
            their own).
    """

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.config = config or BreakerConfig()
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._window: deque[_Outcome] = deque()
        # the window's failed and slow calls, kept as it changes: a call costs no count
        self._failed = 0
        self._slow = 0
        self._opened_at = 0.0
        self._probes_started = 0
        self._probe_outcomes: list[_Outcome] = []
        self.listeners: list[StateListener] = []

    @property
    def state(self) -> BreakerState:
        """The current state (an OPEN breaker whose wait is over reads HALF_OPEN)."""
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.config.open_wait_s
        ):
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    @property
    def seconds_until_half_open(self) -> float:
        """How long an open breaker still refuses calls (0 when it does not)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.config.open_wait_s - (self._clock() - self._opened_at))

    def try_acquire(self) -> bool:
        """Whether a call may go ahead now; a permitted half-open call is a probe and must
        be followed by :meth:`record`."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._probes_started < self.config.half_open_calls:
            self._probes_started += 1
            return True
        return False

    def record(self, *, failed: bool, duration_s: float) -> None:
        """Record the outcome of a permitted call.

        Parameters:
            failed: whether it failed in a way that speaks of the dependency's health.
            duration_s: how long it took.
        """
        outcome = _Outcome(
            at=self._clock(), failed=failed, slow=duration_s >= self.config.slow_call_duration_s
        )
        if self._state is BreakerState.HALF_OPEN:
            self._probe_outcomes.append(outcome)
            if len(self._probe_outcomes) >= self.config.half_open_calls or failed:
                self._judge_probes()
            return
        if self._state is BreakerState.OPEN:
            return  # a call started before the breaker opened
        self._window.append(outcome)
        self._failed += outcome.failed
        self._slow += outcome.slow
        self._trim()
        total = len(self._window)
        if total >= self.config.minimum_calls and self._over_rates(self._failed, self._slow, total):
            self._open()

    def release(self) -> None:
        """Give back a probe permit whose call never reached the dependency."""
        if self._state is BreakerState.HALF_OPEN and self._probes_started > 0:
            self._probes_started -= 1

    def _judge_probes(self) -> None:
        probes = self._probe_outcomes
        failed = sum(outcome.failed for outcome in probes)
        if self._over_rates(failed, sum(outcome.slow for outcome in probes), len(probes)):
            self._open()
        else:
            self._clear_window()
            self._transition(BreakerState.CLOSED)

    def _over_rates(self, failed: int, slow: int, total: int) -> bool:
        return (
            failed * 100.0 / total >= self.config.failure_rate_threshold
            or slow * 100.0 / total >= self.config.slow_call_rate_threshold
        )

    def _trim(self) -> None:
        window = self._window
        if self.config.window_type == "count":
            while len(window) > self.config.window_size:
                self._forget(window.popleft())
        else:
            horizon = self._clock() - self.config.window_size
            while window and window[0].at < horizon:
                self._forget(window.popleft())

    def _forget(self, outcome: _Outcome) -> None:
        self._failed -= outcome.failed
        self._slow -= outcome.slow

    def _clear_window(self) -> None:
        self._window.clear()
        self._failed = self._slow = 0

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._clear_window()
        self._transition(BreakerState.OPEN)

    def _transition(self, new: BreakerState) -> None:
        old = self._state
        if old is new and new is not BreakerState.OPEN:
            return
        self._state = new
        self._probes_started = 0
        self._probe_outcomes = []
        logger.warning("breaker %s: %s -> %s", self.name, old.name, new.name)
        for listener in self.listeners:
            listener(self.name, old, new)
