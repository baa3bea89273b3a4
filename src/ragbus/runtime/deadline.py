"""Deadlines and timeouts: an expired event is not processed; each call is bounded."""

from __future__ import annotations

import asyncio

from ragbus.events import Envelope, utc_now
from ragbus.runtime.stage import Handler, Stage


class EventExpired(Exception):
    """The event's deadline passed before its stage could finish it."""


def expired(envelope: Envelope) -> EventExpired:
    """The error for ``envelope``'s passed deadline."""
    deadline = envelope.deadline.isoformat() if envelope.deadline else "?"
    return EventExpired(f"deadline {deadline} passed")


class DeadlineGuard:
    """Refuses an event whose deadline has passed (:class:`EventExpired`, which the
    consumer dead-letters with reason ``expired``)."""

    async def __call__(
        self, stage: Stage, envelope: Envelope, call_next: Handler
    ) -> list[Envelope]:
        if envelope.is_expired():
            raise expired(envelope)
        return await call_next(envelope)


class TimeoutGuard:
    """Bounds one handler call by ``min(stage.timeout_s, time left before the deadline)``.

    Running out of the stage's time raises ``TimeoutError`` (transient); running past the
    deadline raises :class:`EventExpired`. The call is cancelled either way.
    """

    async def __call__(
        self, stage: Stage, envelope: Envelope, call_next: Handler
    ) -> list[Envelope]:
        budget = stage.timeout_s
        if envelope.deadline is not None:
            budget = min(budget, (envelope.deadline - utc_now()).total_seconds())
            if budget <= 0:
                raise expired(envelope)
        try:
            async with asyncio.timeout(budget):
                return await call_next(envelope)
        except TimeoutError as exc:
            if envelope.is_expired():
                raise expired(envelope) from exc
            raise TimeoutError(f"stage {stage.name} took longer than {budget:.3g}s") from exc
