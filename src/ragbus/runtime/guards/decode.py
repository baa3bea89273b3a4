"""The decode guard: the bytes of a delivery become a valid event of the stage, or the DLQ.

It runs first, before any other guard, on the raw body (so it is a function, not a
middleware). It has no options: limits are the event types' own (payload models with
their bounds, registered on the pipeline). A body that is not JSON, not an envelope,
of an unknown type, of a type the stage does not consume, or whose payload breaks its
schema raises :class:`~ragbus.events.InvalidEvent`; the consumer dead-letters it with
reason ``invalid``, once, and goes on.
"""

from __future__ import annotations

from ragbus.events import Envelope, EventRegistry, InvalidEvent
from ragbus.runtime.stage import Stage


def decode_for(stage: Stage, events: EventRegistry, body: bytes) -> Envelope:
    """``body`` decoded and validated as an event ``stage`` consumes.

    Parameters:
        stage: the consuming stage (its ``consumes`` are the types it accepts).
        events: the pipeline's event types.
        body: the message body as received.
    """
    envelope = events.decode(body)
    if envelope.type not in stage.consumes:
        raise InvalidEvent(f"stage {stage.name} does not consume {envelope.type!r}")
    return envelope
