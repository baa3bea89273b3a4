"""The breaker guard: one circuit breaker per dependency, pausing the stages that use it.

When a dependency's breaker opens, every stage depending on it stops taking events
(the bus keeps them) and the failing event goes back unharmed, its attempt not
counted: an outage fills no dead-letter queue. After the open wait the stages take
events again; the first few are probes, the rest wait for the probes' verdict.

A stage with a fallback handler (``Stage.fallback``: the generate stage with
``RAGBUS_LM_FALLBACK_MODEL``) is not paused: while the breaker refuses, its events go
to the fallback, under the stage's timeout, and the result is not cached.

Settings: ``RAGBUS_BREAKER_*`` (see :func:`ragbus.runtime.guards.stack.breaker_config`
and :class:`ragbus.runtime.circuit.BreakerConfig` for defaults).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from contextvars import ContextVar
from typing import Any

from ragbus.bus.base import Bus
from ragbus.events import Envelope
from ragbus.runtime.circuit import BreakerConfig, BreakerState, CircuitBreaker
from ragbus.runtime.classify import BreakerOpenError, FailureClass, classify, is_rate_limited
from ragbus.runtime.guards.timeout import TimeoutGuard
from ragbus.runtime.metrics import Metrics
from ragbus.runtime.stage import Handler, Stage

logger = logging.getLogger(__name__)

#: Set when the current call was answered by the stage's fallback, so that the cache
#: guard does not keep a degraded answer under the primary's key.
SERVED_BY_FALLBACK: ContextVar[bool] = ContextVar("ragbus_served_by_fallback", default=False)


class BreakerBoard:
    """The breakers of one runtime and the stages each one pauses and resumes.

    Parameters:
        bus: where stages are paused and resumed.
        config: thresholds and timings of every breaker (default :class:`BreakerConfig()`).
        metrics: exports each breaker's state (default: a private set).
    """

    def __init__(
        self, bus: Bus, config: BreakerConfig | None = None, metrics: Metrics | None = None
    ) -> None:
        self.bus = bus
        self.config = config or BreakerConfig()
        self.metrics = metrics or Metrics()
        self.breakers: dict[str, CircuitBreaker] = {}
        self.stages: dict[str, set[str]] = {}
        self.changed: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._resume_timers: dict[str, asyncio.TimerHandle] = {}

    def breaker_for(self, stage: Stage) -> CircuitBreaker | None:
        """The breaker of ``stage``'s dependency (created on first use), or None."""
        if stage.dependency is None:
            return None
        stages = self.stages.setdefault(stage.dependency, set())
        if stage.fallback is None:  # a stage with a fallback goes on while it is open
            stages.add(stage.name)
        breaker = self.breakers.get(stage.dependency)
        if breaker is None:
            breaker = CircuitBreaker(stage.dependency, self.config)
            breaker.listeners.append(self._on_transition)
            self.breakers[stage.dependency] = breaker
            self.changed[stage.dependency] = asyncio.Event()
            self.metrics.breaker_state.labels(stage.dependency).set(BreakerState.CLOSED)
        return breaker

    def _on_transition(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.metrics.breaker_state.labels(name).set(new)
        self.changed[name].set()
        self.changed[name] = asyncio.Event()
        if new is BreakerState.OPEN:
            for stage in self.stages.get(name, ()):
                self._spawn(self.bus.pause(stage))
            wait = self.breakers[name].config.open_wait_s
            timer = self._resume_timers.pop(name, None)
            if timer is not None:
                timer.cancel()
            self._resume_timers[name] = asyncio.get_running_loop().call_later(
                wait, self._resume, name
            )
        elif new is BreakerState.CLOSED:
            self._resume(name)

    def _resume(self, name: str) -> None:
        self._resume_timers.pop(name, None)
        for stage in self.stages.get(name, ()):
            self._spawn(self.bus.resume(stage))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Cancel pending resume timers."""
        for timer in self._resume_timers.values():
            timer.cancel()
        self._resume_timers.clear()


class BreakerGuard:
    """Lets a call through only when its dependency's breaker allows it, and records the
    outcome: transient failures count against the dependency; permanent ones and
    refusals for load (HTTP 429) do not.

    Parameters:
        board: the runtime's breakers.
        probe_wait_s: longest wait for the half-open probes' verdict before the event is
            put back (default 30).
    """

    def __init__(self, board: BreakerBoard, *, probe_wait_s: float = 30.0) -> None:
        self.board = board
        self.probe_wait_s = probe_wait_s

    async def __call__(
        self, stage: Stage, envelope: Envelope, call_next: Handler
    ) -> list[Envelope]:
        breaker = self.board.breaker_for(stage)
        if breaker is None:
            return await call_next(envelope)
        try:
            await self._acquire(breaker, wait=stage.fallback is None)
        except BreakerOpenError:
            if stage.fallback is None:
                raise
            return await _fallback(stage, envelope, stage.fallback)
        started = time.monotonic()
        try:
            outputs = await call_next(envelope)
        except asyncio.CancelledError:
            breaker.release()
            raise
        except Exception as exc:
            # a 429 is the dependency up and answering, asking for fewer calls: the rate
            # and adaptive limits answer it; the breaker counts what says it is down
            failed = classify(exc) is FailureClass.TRANSIENT and not is_rate_limited(exc)
            breaker.record(failed=failed, duration_s=time.monotonic() - started)
            if failed and breaker.state is not BreakerState.CLOSED:
                if stage.fallback is not None:
                    return await _fallback(stage, envelope, stage.fallback)
                raise BreakerOpenError(f"{breaker.name} breaker opened: {exc!r}") from exc
            raise
        breaker.record(failed=False, duration_s=time.monotonic() - started)
        return outputs

    async def _acquire(self, breaker: CircuitBreaker, *, wait: bool = True) -> None:
        """Take a permit; without ``wait``, refuse at once while the probes decide."""
        if breaker.try_acquire():
            return  # the common case: no timer to arm and cancel
        try:
            async with asyncio.timeout(self.probe_wait_s):
                while not breaker.try_acquire():
                    if breaker.state is BreakerState.OPEN or not wait:
                        raise BreakerOpenError(
                            f"{breaker.name} breaker is open for "
                            f"{breaker.seconds_until_half_open:.1f}s more"
                        )
                    await self.board.changed[breaker.name].wait()
        except TimeoutError:
            raise BreakerOpenError(f"{breaker.name} breaker: probes undecided") from None


async def _fallback(stage: Stage, envelope: Envelope, fallback: Handler) -> list[Envelope]:
    """``envelope`` handled by ``stage``'s fallback, under the stage's timeout."""
    logger.debug("stage %s: %s answered by the fallback", stage.name, envelope.id)
    SERVED_BY_FALLBACK.set(True)
    return await TimeoutGuard()(stage, envelope, fallback)
