"""The deadline guard: an event whose deadline passed is not processed.

:class:`DeadlineGuard` takes no options. An expired event raises :class:`EventExpired`,
which the consumer dead-letters with reason ``expired`` (never silently dropped).
"""

from __future__ import annotations

from ragbus.events import Envelope
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
