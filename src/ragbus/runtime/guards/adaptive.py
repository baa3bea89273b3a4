"""The adaptive limit guard: how many calls to a dependency (the LM) are in flight at once.

Nobody has to know how many concurrent calls the LM takes: the limit follows it, in the
spirit of Netflix's concurrency-limits (``Gradient2Limit`` for the latency gradient,
``AIMDLimit`` for the reaction to drops):

- **grows** while the dependency is busy (at least half the limit in flight), its
  latency stays near its baseline, and no call is refused: by ``sqrt(limit)`` per
  window of ``limit`` calls, 4 at least (the queue Netflix's gradient allows);
- **shrinks** with the latency gradient ``clamp(tolerance * baseline / latency, 0.5,
  1)`` when latency rises above ``tolerance`` times its baseline (a queue builds up in
  the dependency), and by ``backoff`` (x0.9) when a call is refused (HTTP 429/503) or
  times out; only a call sent since the last cut cuts again (the calls in flight when
  the first refusal came back were sent under the old limit, like TCP's one cut per
  window);
- **remembers the ceiling** where calls were refused and grows no further than that,
  raising the ceiling by one every ``probe_s`` seconds without a refusal, so it finds
  more room when the dependency gets it, at the cost of about one refusal per probe.

The baseline is the lowest window latency seen, drifting up by 1 % per window, so that
it follows a dependency that became slower for good.

Settings (one limit per dependency and process; ``Stage.concurrency`` still bounds each
stage): ``RAGBUS_LM_CONCURRENCY_ADAPTIVE`` (default true),
``RAGBUS_LM_CONCURRENCY_START`` (16), ``RAGBUS_LM_CONCURRENCY_MIN`` (1),
``RAGBUS_LM_CONCURRENCY_MAX`` (256). The limit is exported as
``ragbus_concurrency_limit{dependency=...}``; :meth:`LimiterBoard.limits` gives it to a
status view.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ragbus.events import Envelope, utc_now
from ragbus.runtime.classify import causes, http_status, is_rate_limited
from ragbus.runtime.guards.deadline import expired
from ragbus.runtime.metrics import Metrics
from ragbus.runtime.stage import Handler, Stage


def is_overload(exc: BaseException) -> bool:
    """Whether ``exc`` (or one of its causes) says the dependency is over capacity: HTTP
    429 or a rate-limit error, HTTP 503, or a timeout."""
    return is_rate_limited(exc) or any(
        isinstance(current, TimeoutError)
        or http_status(current) == 503
        or any(cls.__name__ == "ServiceUnavailableError" for cls in type(current).__mro__)
        for current in causes(exc)
    )


@dataclass(frozen=True)
class AdaptiveConfig:
    """The bounds and the reflexes of an adaptive limit.

    Parameters:
        start: the limit before any call (default 16).
        minimum: the lowest limit (default 1).
        maximum: the highest limit (default 256).
        tolerance: latency up to this multiple of the baseline counts as no queue
            (default 2.0, Netflix's ``rttTolerance``).
        backoff: the factor a refusal or timeout multiplies the limit by (default 0.9).
        smoothing: how much of the gradient's cut applies per window (default 0.5).
        probe_s: seconds without a refusal after which the ceiling rises by one
            (default 15).
    """

    start: int = 16
    minimum: int = 1
    maximum: int = 256
    tolerance: float = 2.0
    backoff: float = 0.9
    smoothing: float = 0.5
    probe_s: float = 15.0

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.start <= self.maximum:
            raise ValueError(
                "adaptive concurrency: need 1 <= min <= start <= max, got "
                f"min {self.minimum}, start {self.start}, max {self.maximum} "
                "(RAGBUS_LM_CONCURRENCY_MIN, _START, _MAX)"
            )
        if not 0.5 <= self.backoff < 1.0:
            raise ValueError("adaptive limit: backoff must be in [0.5, 1)")


@dataclass
class AdaptiveLimit:
    """The limit of one dependency, updated from each call's outcome. No I/O, no clock of
    its own: the caller passes the time, so it is tested without waiting.

    Parameters:
        config: bounds and reflexes (default :class:`AdaptiveConfig()`).
    """

    config: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    limit: float = 0.0
    ceiling: float | None = None
    baseline_s: float | None = None
    _window_calls: int = 0
    _window_latency_s: float = 0.0
    _window_busy: bool = False
    cuts: int = 0
    _last_refusal: float = -math.inf

    def __post_init__(self) -> None:
        if not self.limit:
            self.limit = float(self.config.start)

    @property
    def current(self) -> int:
        """The whole number of calls allowed in flight now."""
        return max(self.config.minimum, int(self.limit))

    def on_refused(self, now: float, sent_after: int) -> None:
        """A call was refused (429/503) or timed out at ``now`` (seconds, monotonic).

        Parameters:
            now: the time, monotonic seconds.
            sent_after: :attr:`cuts` when the call was sent; a call sent before the
                last cut says nothing about the new limit.
        """
        self._last_refusal = now
        if sent_after != self.cuts:
            return
        self.cuts += 1
        self.ceiling = max(float(self.config.minimum), math.floor(self.limit) - 1.0)
        self._set(self.limit * self.config.backoff)
        self._reset_window()

    def on_success(self, latency_s: float, in_flight: int, now: float) -> None:
        """A call succeeded in ``latency_s`` with ``in_flight`` calls in flight (itself
        included) at ``now``."""
        self._window_calls += 1
        self._window_latency_s += latency_s
        self._window_busy |= in_flight * 2 >= self.current
        if self._window_calls < max(self.current, 4):
            return
        average = self._window_latency_s / self._window_calls
        busy = self._window_busy
        self._reset_window()
        if self.baseline_s is None or average < self.baseline_s:
            self.baseline_s = average
        else:
            self.baseline_s *= 1.01  # a dependency that became slower for good
        if self.ceiling is not None and now - self._last_refusal >= self.config.probe_s:
            self.ceiling += 1.0
            self._last_refusal = now
        gradient = max(0.5, min(1.0, self.config.tolerance * self.baseline_s / average))
        if gradient < 1.0:
            self._set(self.limit * (1.0 - self.config.smoothing * (1.0 - gradient)))
        elif busy:  # an idle dependency says nothing about how much more it takes
            grown = self.limit + math.sqrt(self.limit)
            self._set(grown if self.ceiling is None else min(grown, self.ceiling))

    def _set(self, limit: float) -> None:
        self.limit = min(float(self.config.maximum), max(float(self.config.minimum), limit))

    def _reset_window(self) -> None:
        self._window_calls = 0
        self._window_latency_s = 0.0
        self._window_busy = False


class Gate:
    """A semaphore whose size is read from the limit at each admission.

    Parameters:
        limit: the adaptive limit it admits by.
    """

    def __init__(self, limit: AdaptiveLimit) -> None:
        self.limit = limit
        self.in_flight = 0
        self._room = asyncio.Event()

    async def acquire(self) -> None:
        """Wait until fewer calls than the limit are in flight, and count one more."""
        while self.in_flight >= self.limit.current:
            await self._room.wait()
        self.in_flight += 1

    def release(self) -> None:
        """Count one call less and wake the waiters (synchronous, so a cancelled call
        always gives its place back)."""
        self.in_flight -= 1
        # a fresh event per release: every waiter re-checks, those left wait for the next
        room, self._room = self._room, asyncio.Event()
        room.set()


class LimiterBoard:
    """The adaptive limits of one runtime, one per dependency.

    Parameters:
        configs: the configuration of each dependency that is limited (others pass).
        metrics: exports each limit as ``ragbus_concurrency_limit`` (default: a private
            set).
        clock: monotonic seconds (default ``time.monotonic``).
    """

    def __init__(
        self,
        configs: dict[str, AdaptiveConfig],
        metrics: Metrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.configs = dict(configs)
        self.metrics = metrics or Metrics()
        self.clock = clock
        self._gates: dict[str, Gate] = {}

    def gate(self, dependency: str | None) -> Gate | None:
        """The gate of ``dependency`` (created on first use), or None if not limited."""
        if dependency is None or dependency not in self.configs:
            return None
        gate = self._gates.get(dependency)
        if gate is None:
            gate = Gate(AdaptiveLimit(self.configs[dependency]))
            self._gates[dependency] = gate
            self.export(dependency)
        return gate

    def limits(self) -> dict[str, int]:
        """The current limit of each dependency that has been called."""
        return {name: gate.limit.current for name, gate in self._gates.items()}

    def export(self, dependency: str) -> None:
        """Set ``dependency``'s gauge to its current limit."""
        self.metrics.concurrency_limit.labels(dependency).set(self._gates[dependency].limit.current)


class AdaptiveLimitGuard:
    """Holds a call until its dependency's adaptive limit has room (no longer than the
    event's deadline), then feeds the limit the call's latency, or its refusal. The events
    of a batch stage (``Stage.batch_size`` > 1) pass: they share their calls.

    Parameters:
        board: the runtime's limits.
    """

    def __init__(self, board: LimiterBoard) -> None:
        self.board = board

    async def __call__(
        self, stage: Stage, envelope: Envelope, call_next: Handler
    ) -> list[Envelope]:
        # the limit counts calls of the dependency, and follows their latency: a batch
        # stage's events share one call per batch and each waits for its batch first, so
        # gating its events would shrink the batches instead (its calls are bounded by
        # concurrency / batch size)
        gate = None if stage.batch_size > 1 else self.board.gate(stage.dependency)
        if gate is None:
            return await call_next(envelope)
        await _acquire(gate, envelope)
        started = self.board.clock()
        in_flight, cuts = gate.in_flight, gate.limit.cuts
        try:
            outputs = await call_next(envelope)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_overload(exc):
                gate.limit.on_refused(self.board.clock(), cuts)
            raise
        else:
            now = self.board.clock()
            gate.limit.on_success(now - started, in_flight, now)
            return outputs
        finally:
            gate.release()
            self.board.export(stage.dependency or "")


async def _acquire(gate: Gate, envelope: Envelope) -> None:
    """A place in ``gate``, waited for no longer than ``envelope``'s deadline
    (:class:`~ragbus.runtime.guards.deadline.EventExpired` then)."""
    if envelope.deadline is None:
        await gate.acquire()
        return
    try:
        async with asyncio.timeout((envelope.deadline - utc_now()).total_seconds()):
            await gate.acquire()
    except TimeoutError:
        raise expired(envelope) from None
