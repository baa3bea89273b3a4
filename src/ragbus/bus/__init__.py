"""Transport: the Bus interface and its backends."""

from ragbus.bus.base import (
    Bus,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterReason,
    InboundMessage,
    MessageHandler,
    Requeue,
)
from ragbus.bus.errors import BusError, PublishNotConfirmedError, UnroutableError
from ragbus.bus.memory import MemoryBus

__all__ = [
    "Bus",
    "BusError",
    "DeadLetter",
    "DeadLetterFilter",
    "DeadLetterReason",
    "InboundMessage",
    "MemoryBus",
    "MessageHandler",
    "PublishNotConfirmedError",
    "Requeue",
    "UnroutableError",
]
