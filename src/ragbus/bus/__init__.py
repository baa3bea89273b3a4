"""Transport: the Bus interface and its backends.

The errors and the dead-letter reasons are light and load with the package; the
interface and the memory bus (pydantic, the event models) load when first used, so
that ``ragbus --help`` can name an error or a reason without them.
"""

from typing import TYPE_CHECKING

from ragbus.bus.errors import (
    BrokerRefusedError,
    BrokerUnavailableError,
    BusError,
    PublishNotConfirmedError,
    UnknownStageError,
    UnroutableError,
)
from ragbus.bus.reasons import DeadLetterReason
from ragbus.lazy import lazy_names

if TYPE_CHECKING:
    from ragbus.bus.base import (
        Bus,
        DeadLetter,
        DeadLetterFilter,
        DeadLetterStore,
        InboundMessage,
        MessageHandler,
        Requeue,
        emitter,
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

__getattr__ = lazy_names(
    __name__,
    {
        **dict.fromkeys(
            (
                "Bus",
                "DeadLetter",
                "DeadLetterFilter",
                "DeadLetterStore",
                "InboundMessage",
                "MessageHandler",
                "Requeue",
                "emitter",
            ),
            "ragbus.bus.base",
        ),
        "MemoryBus": "ragbus.bus.memory",
    },
)
