"""Listens for workers' heartbeats and keeps the latest of each worker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from ragbus.bus.base import Bus, InboundMessage
from ragbus.control import CONTROL_EVENTS, HEARTBEAT, WorkerHeartbeat
from ragbus.events import InvalidEvent

#: A worker is forgotten when this many of its intervals pass without a heartbeat.
MISSED_BEATS = 3


class HeartbeatBoard:
    """The latest heartbeat of each worker of one app, from an ephemeral subscription.

    Parameters:
        app: the pipeline's name; heartbeats of other apps are ignored.
        clock: monotonic seconds (default ``time.monotonic``).
    """

    def __init__(self, app: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.clock = clock
        self.started_at = clock()
        self._beats: dict[str, tuple[WorkerHeartbeat, float]] = {}

    def subscribe(self, bus: Bus) -> None:
        """Follow heartbeats on ``bus`` (call before or after it starts)."""
        self.started_at = self.clock()
        bus.subscribe(
            f"status-{uuid.uuid4().hex[:12]}", [HEARTBEAT], self, concurrency=1, ephemeral=True
        )

    async def __call__(self, message: InboundMessage) -> None:
        """Keep one heartbeat; anything else on the subscription is ignored (it is
        best effort: a bad heartbeat must not stop the others)."""
        try:
            envelope = CONTROL_EVENTS.decode(message.body)
            beat = envelope.payload_as(WorkerHeartbeat)
        except (InvalidEvent, ValueError):
            return
        if beat.app == self.app:
            self._beats[beat.worker_id] = (beat, self.clock())

    def receive(self, beat: WorkerHeartbeat) -> None:
        """Keep ``beat`` as if it had arrived now (a runtime in this process)."""
        self._beats[beat.worker_id] = (beat, self.clock())

    def current(self) -> list[tuple[WorkerHeartbeat, float]]:
        """Each live worker's latest heartbeat with its age in seconds; a worker silent
        for :data:`MISSED_BEATS` of its intervals is dropped."""
        now = self.clock()
        live = []
        for worker_id, (beat, at) in list(self._beats.items()):
            age = now - at
            if age > MISSED_BEATS * beat.interval_s:
                del self._beats[worker_id]
            else:
                live.append((beat, age))
        return live
