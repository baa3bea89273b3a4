"""Build the bus the settings name."""

from __future__ import annotations

from ragbus.bus.base import Bus
from ragbus.bus.memory import MemoryBus
from ragbus.config import BusKind, Settings


def make_bus(settings: Settings) -> Bus:
    """A new, unconnected bus of ``settings.bus`` kind, configured from ``settings``."""
    if settings.bus is BusKind.MEMORY:
        return MemoryBus(
            queue_max_length=settings.queue_max_length,
            queue_full_wait_s=settings.queue_full_wait_s,
            dlq_path=settings.dlq_path,
            delivery_limit=settings.delivery_limit,
        )
    from ragbus.bus.rabbitmq import RabbitMQBus

    return RabbitMQBus.from_settings(settings)
