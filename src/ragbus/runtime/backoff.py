"""Jittered exponential backoff for delayed redeliveries."""

from __future__ import annotations

import random

#: The delay tiers of a redelivery, in seconds. RabbitMQ has one retry queue per tier.
DELAY_TIERS: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)


def redelivery_delay(attempt: int, *, tiers: tuple[float, ...] = DELAY_TIERS) -> float:
    """The delay before delivery ``attempt + 1`` of an event that failed ``attempt`` times.

    Parameters:
        attempt: the failed attempt, from 1.
        tiers: the delays to choose from (default :data:`DELAY_TIERS`); the last repeats.
    """
    return tiers[min(max(attempt, 1), len(tiers)) - 1]


def jittered(base: float, *, jitter: float = 0.2) -> float:
    """``base`` scaled by a random factor in ``[1 - jitter, 1]`` (default 0.2).

    The jitter only shortens: RabbitMQ rounds a delay up to the next delay tier, so a
    delay jittered past its tier would wait a whole tier longer (1 s would become 5 s).
    """
    return base * random.uniform(1.0 - jitter, 1.0)
