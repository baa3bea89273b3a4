"""Worker heartbeats: every few seconds a runtime says what it serves and how it is doing.

A heartbeat is a transient ``ragbus.heartbeat`` control event (:mod:`ragbus.control`):
best effort, never persisted, dropped when nobody listens, so it costs a worker one
small publish per interval. ``ragbus status`` and the gateway's ``/v1/status`` listen
for them (:mod:`ragbus.status.board`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ragbus.bus.base import Bus
from ragbus.control import CONTROL_EVENTS, HEARTBEAT, WorkerHeartbeat
from ragbus.runtime.runner import Runtime
from ragbus.runtime.stats import StageCounters

logger = logging.getLogger(__name__)


def heartbeat_of(
    counters: StageCounters, *, app: str, worker_id: str, interval_s: float
) -> WorkerHeartbeat:
    """The heartbeat a runtime sends now.

    Parameters:
        counters: the runtime's counters.
        app: the pipeline's name.
        worker_id: the worker's name.
        interval_s: seconds until the next heartbeat.
    """
    return WorkerHeartbeat(
        worker_id=worker_id,
        app=app,
        stages=[stage.name for stage in counters.runtime.stages],
        interval_s=interval_s,
        stats=counters.snapshot(),
        breakers=counters.breakers(),
    )


class HeartbeatSender:
    """Publishes a runtime's heartbeat every ``interval_s`` seconds while started.

    Parameters:
        bus: where to publish (transient: never raises, never blocks a stage).
        runtime: the runtime whose stages it reports.
        app: the pipeline's name.
        worker_id: the worker's name (``RAGBUS_WORKER_ID``).
        interval_s: seconds between heartbeats (``RAGBUS_HEARTBEAT_INTERVAL_S``, default 2).
    """

    def __init__(
        self, bus: Bus, runtime: Runtime, *, app: str, worker_id: str, interval_s: float = 2.0
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.bus = bus
        self.counters = StageCounters(runtime)
        self.app = app
        self.worker_id = worker_id
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sending in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ragbus:heartbeat")

    async def stop(self) -> None:
        """Stop sending."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def send(self) -> None:
        """Publish one heartbeat now."""
        beat = heartbeat_of(
            self.counters, app=self.app, worker_id=self.worker_id, interval_s=self.interval_s
        )
        await self.bus.publish(CONTROL_EVENTS.new(HEARTBEAT, beat), transient=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.send()
            except asyncio.CancelledError:
                raise
            except Exception:  # a heartbeat must never take a worker down
                logger.debug("heartbeat not sent", exc_info=True)
            await asyncio.sleep(self.interval_s)
