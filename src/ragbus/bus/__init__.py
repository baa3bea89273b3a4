"""Transport: the Bus interface and its backends."""

from ragbus.bus.base import (
    Bus,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterReason,
    DeadLetterStore,
    InboundMessage,
    MessageHandler,
    Requeue,
    emitter,
)
from ragbus.bus.errors import (
    BrokerRefusedError,
    BrokerUnavailableError,
    BusError,
    PublishNotConfirmedError,
    UnknownStageError,
    UnroutableError,
)
from ragbus.bus.memory import MemoryBus

__all__ = [
    "BrokerRefusedError",
    "BrokerUnavailableError",
    "Bus",
    "BusError",
    "DeadLetter",
    "DeadLetterFilter",
    "DeadLetterReason",
    "DeadLetterStore",
    "InboundMessage",
    "MemoryBus",
    "MessageHandler",
    "PublishNotConfirmedError",
    "Requeue",
    "UnknownStageError",
    "UnroutableError",
    "emitter",
]
