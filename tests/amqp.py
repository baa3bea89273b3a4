"""RabbitMQ test namespaces: buses sharing one exchange and queue prefix, deleted afterwards."""

from __future__ import annotations

import uuid
from typing import Any

import aio_pika

from ragbus.bus.rabbitmq import RabbitMQBus, Topology
from ragbus.pipelines.rag import SINKS

#: Short delay tiers, so retry tests wait fractions of a second.
TIERS = (0.2, 0.5)


class Namespace:
    """Buses sharing one exchange and queue prefix, cleaned up after the test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"test-{uuid.uuid4().hex[:10]}"
        self.exchange = f"{self.prefix}.events"
        self.buses: list[RabbitMQBus] = []
        self.stages: set[str] = set()

    @property
    def topology(self) -> Topology:
        return Topology(exchange=self.exchange, prefix=self.prefix, delay_tiers=TIERS)

    def make(self, **options: Any) -> RabbitMQBus:
        """A new, unconnected bus in this namespace (``options`` go to the constructor)."""
        options.pop("dlq_path", None)
        bus = RabbitMQBus(self.url, exchange=self.exchange, queue_prefix=self.prefix, **options)
        self.buses.append(bus)
        return bus

    async def bus(self, **options: Any) -> RabbitMQBus:
        """A new, connected bus in this namespace, with the short delay :data:`TIERS`."""
        options.setdefault("delay_tiers", TIERS)
        bus = self.make(**options)
        await bus.connect()
        return bus

    async def cleanup(self) -> None:
        """Close every bus of the namespace and delete its queues and exchange."""
        for bus in self.buses:
            await bus.close()
        names = {
            name
            for bus in self.buses
            for stage in {*bus.declarer.declared_stages, *self.stages}
            for name in bus.topology.stage_queues(stage)
        }
        names.update(bus.topology.sink_queue(sink) for bus in self.buses for sink in SINKS)
        connection = await aio_pika.connect(self.url)
        try:
            for name in sorted(names):
                channel = await connection.channel()
                await channel.queue_delete(name)
                await channel.close()
            channel = await connection.channel()
            await channel.exchange_delete(self.exchange)
        finally:
            await connection.close()
