"""What happens to an event whose handler failed: the one owner of redelivery.

classify -> ``attempt + 1`` -> delay tier -> delayed redelivery, or the DLQ.

- permanent failure: the DLQ at once, reason ``failed``;
- transient failure, ``attempt < max_attempts``: the event again, ``attempt + 1``, to
  its own stage only, after the delay of its attempt (:data:`DELAY_TIERS`, shortened by
  up to 20 % of jitter), or after the dependency's ``Retry-After`` when it said one;
- transient failure at ``max_attempts``: the DLQ, reason ``failed``, with the count;
- breaker open: back to the queue unharmed, the attempt not counted (``Requeue``).

The delay tiers, the attempts before the DLQ and the bus's delivery limit are defined
here and nowhere else: the settings' defaults, the memory bus and RabbitMQ's retry
queues all read them from this module. :func:`decide` is pure (no I/O): the stage
consumer carries its decision out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ragbus.events import Envelope
from ragbus.runtime.classify import FailureClass, classify, retry_after

#: The delay tiers of a redelivery, in seconds: delivery ``n + 1`` of an event whose
#: delivery ``n`` failed waits ``DELAY_TIERS[n - 1]`` (the last repeats). RabbitMQ has
#: one retry queue per tier (``RAGBUS_REDELIVERY_DELAYS_S``).
DELAY_TIERS: Final[tuple[float, ...]] = (1.0, 5.0, 30.0, 120.0)

#: Deliveries of a transiently failing event before the DLQ (``RAGBUS_MAX_ATTEMPTS``).
MAX_ATTEMPTS: Final = 5

#: Deliveries of a message whose handler crashes its worker before the bus dead-letters
#: it with reason ``delivery_limit`` (RabbitMQ: the quorum queues' ``x-delivery-limit``;
#: memory bus: its own count; ``RAGBUS_DELIVERY_LIMIT``).
DELIVERY_LIMIT: Final = 20

#: The share a redelivery delay is shortened by at most, at random.
JITTER: Final = 0.2


class Outcome(StrEnum):
    """What becomes of a failed event."""

    REDELIVER = "redeliver"
    DEAD_LETTER = "dead_letter"
    REQUEUE = "requeue"


@dataclass(frozen=True, slots=True)
class Decision:
    """The fate of one failed event.

    Parameters:
        outcome: redeliver, dead-letter or requeue.
        failure: the failure's class.
        retry: the event to redeliver (``attempt + 1``), for ``REDELIVER`` only.
        delay_s: seconds before the redelivery, for ``REDELIVER`` only (default 0).
    """

    outcome: Outcome
    failure: FailureClass
    retry: Envelope | None = None
    delay_s: float = 0.0


def redelivery_delay(attempt: int, *, tiers: tuple[float, ...] = DELAY_TIERS) -> float:
    """The delay before delivery ``attempt + 1`` of an event that failed ``attempt`` times.

    Parameters:
        attempt: the failed attempt, from 1.
        tiers: the delays to choose from (default :data:`DELAY_TIERS`); the last repeats.
    """
    return tiers[min(max(attempt, 1), len(tiers)) - 1]


def jittered(base: float, *, jitter: float = JITTER) -> float:
    """``base`` scaled by a random factor in ``[1 - jitter, 1]`` (default 0.2).

    The jitter only shortens: RabbitMQ rounds a delay up to the next delay tier, so a
    delay jittered past its tier would wait a whole tier longer (1 s would become 5 s).
    """
    return base * random.uniform(1.0 - jitter, 1.0)


def decide(
    envelope: Envelope,
    exc: BaseException,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    tiers: tuple[float, ...] = DELAY_TIERS,
) -> Decision:
    """What to do with ``envelope`` whose handling failed with ``exc``.

    Parameters:
        envelope: the event as delivered (its ``attempt`` is the delivery that failed).
        exc: the failure.
        max_attempts: deliveries before the DLQ (default :data:`MAX_ATTEMPTS`).
        tiers: the redelivery delays by attempt (default :data:`DELAY_TIERS`).
    """
    failure = classify(exc)
    if failure is FailureClass.BREAKER_OPEN:
        return Decision(Outcome.REQUEUE, failure)
    if failure is FailureClass.PERMANENT or envelope.attempt >= max_attempts:
        return Decision(Outcome.DEAD_LETTER, failure)
    delay = retry_after(exc) or jittered(redelivery_delay(envelope.attempt, tiers=tiers))
    retry = envelope.model_copy(update={"attempt": envelope.attempt + 1})
    return Decision(Outcome.REDELIVER, failure, retry=retry, delay_s=delay)
