"""A stage's outputs under backpressure: the stage waits for room downstream.

When the next stage's queue is full, the bus refuses an output after its own wait
(:mod:`ragbus.bus.backpressure`) with :class:`~ragbus.errors.QueueFullError`. For a stage
that is not a failure of its input: the stage keeps the input (unacknowledged) and
publishes again, until there is room or the output's deadline has passed. So a slow
stage holds the one before it back, that one's queue fills in turn, and the refusal
travels up to whoever publishes questions (the gateway answers 429), instead of
inputs being retried, counted as attempts and dead-lettered by an overload that is
nobody's fault. Past the deadline, the refusal is raised and the input is redelivered
as for any transient failure (it then expires).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from ragbus.bus.base import Bus
from ragbus.errors import QueueFullError
from ragbus.events import Envelope

logger = logging.getLogger(__name__)

#: Seconds between two publishes of a refused output, beyond the bus's own wait.
PAUSE_S: Final = 0.05


async def publish_downstream(bus: Bus, event: Envelope) -> None:
    """Publish ``event``, a stage's output, trying again while a queue refuses it as full
    until ``event``'s deadline has passed (no deadline: until there is room).

    Parameters:
        bus: where to publish.
        event: the output.

    Raises:
        QueueFullError: the queue was still full when the deadline passed.
    """
    while True:
        try:
            await bus.publish(event)
            return
        except QueueFullError:
            if event.is_expired():
                raise
            logger.debug("%s %s: the next queue is full; holding on", event.type, event.id)
        await asyncio.sleep(PAUSE_S)
