"""Backpressure for publishers: how long one may wait for room in a full queue, and the
error it ends with when there was none.

Every stage queue is bounded on both buses (``RAGBUS_QUEUE_MAX_LENGTH``). A publish that
finds a queue full waits for room (the memory bus) or backs off and tries again (RabbitMQ,
whose queue refuses it with a publisher-confirm nack) for at most its *budget*: the
bus's ``queue_full_wait_s`` (``RAGBUS_QUEUE_FULL_WAIT_S``), cut short by the event's
deadline. Then it fails with :class:`~ragbus.errors.QueueFullError`, which callers can act
on: the gateway answers 429 with ``Retry-After``, a stage's output is redelivered later.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Final

from ragbus.errors import QueueFullError
from ragbus.events import Envelope, utc_now

#: Default seconds a publisher waits for room in a full queue before it gives up.
DEFAULT_QUEUE_FULL_WAIT_S: Final = 5.0

#: Default bound of each stage queue, in events.
DEFAULT_QUEUE_MAX_LENGTH: Final = 1000

#: First and longest pause between two tries of a refused publish, in seconds.
FIRST_BACKOFF_S: Final = 0.02
MAX_BACKOFF_S: Final = 0.5

#: Seconds a refused caller is told to wait before trying again (``Retry-After``).
RETRY_AFTER_S: Final = 1.0


class Refused(Exception):
    """One try of a publish was refused by a full queue (raised by the transport, caught
    by :func:`until_accepted`)."""


def wait_budget(envelope: Envelope | None, wait_s: float) -> float:
    """Seconds a publish of ``envelope`` may wait for room: ``wait_s``, or less when the
    event's deadline comes first (0 once it has passed: one try, no wait).

    Parameters:
        envelope: the event published (None: no deadline to respect).
        wait_s: the bus's longest wait.
    """
    if envelope is None or envelope.deadline is None:
        return max(wait_s, 0.0)
    left = (envelope.deadline - utc_now()).total_seconds()
    return max(min(wait_s, left), 0.0)


def queue_full(where: str, waited: float) -> QueueFullError:
    """The error of a publish that found ``where`` full for ``waited`` seconds."""
    return QueueFullError(
        f"{where} is full and stayed full for {waited:.1f}s: the stages are behind; "
        f"try again in {RETRY_AFTER_S:g}s",
        retry_after=RETRY_AFTER_S,
    )


async def until_accepted(send: Callable[[], Awaitable[None]], *, budget: float, where: str) -> None:
    """Call ``send`` until it is not :class:`Refused`, pausing between tries (jittered
    exponential backoff from :data:`FIRST_BACKOFF_S` to :data:`MAX_BACKOFF_S`), for at
    most ``budget`` seconds; then raise :class:`~ragbus.errors.QueueFullError`.

    Parameters:
        send: one try of the publish; raises :class:`Refused` when a queue refused it.
        budget: seconds to keep trying (see :func:`wait_budget`); 0 tries once.
        where: the refusing queue, for the error message.
    """
    loop = asyncio.get_running_loop()
    ends = loop.time() + budget
    pause = FIRST_BACKOFF_S
    while True:
        try:
            await send()
            return
        except Refused:
            left = ends - loop.time()
            if left <= 0:
                raise queue_full(where, budget) from None
        # full jitter: many refused publishers must not all come back at once
        await asyncio.sleep(min(random.uniform(0, pause), left))
        pause = min(pause * 2, MAX_BACKOFF_S)
