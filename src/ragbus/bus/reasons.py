"""Why an event was dead-lettered, without the dead-letter models: ``ragbus dlq --help``
names the reasons and needs nothing else of the bus."""

from __future__ import annotations

from enum import StrEnum


class DeadLetterReason(StrEnum):
    """Why an event was dead-lettered."""

    INVALID = "invalid"
    FAILED = "failed"
    EXPIRED = "expired"
    DELIVERY_LIMIT = "delivery_limit"
