"""A private RabbitMQ namespace per benchmark contender, deleted afterwards.

Every contender declares its exchange and queues under a fresh name, so runs never
share a queue with each other, with a deployment, or with a test on the same broker;
:func:`delete_namespace` removes them (messages included) when the contender is done.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import aio_pika
from aiormq.exceptions import AMQPError

from ragbus.bus.rabbitmq.topology import Topology
from ragbus.config import Settings
from ragbus.pipelines.rag import pipeline as rag


@dataclass(frozen=True)
class Namespace:
    """The names one contender uses on the broker.

    Parameters:
        exchange: its topic exchange.
        prefix: the prefix of each of its queues.
    """

    exchange: str
    prefix: str

    @classmethod
    def fresh(cls, label: str) -> Namespace:
        """A new namespace ``ragbus-bench.<label>.<random>`` (exchange and prefix alike).

        Parameters:
            label: says which contender it belongs to, e.g. ``ragbus`` or ``aiopika``.
        """
        name = f"ragbus-bench.{label}.{uuid.uuid4().hex[:10]}"
        return cls(exchange=name, prefix=name)

    def queue(self, name: str) -> str:
        """``<prefix>.<name>``."""
        return f"{self.prefix}.{name}"

    def apply(self, settings: Settings) -> Settings:
        """``settings`` with this namespace's exchange and queue prefix."""
        return settings.model_copy(update={"exchange": self.exchange, "queue_prefix": self.prefix})

    def ragbus_queues(self) -> list[str]:
        """Every durable queue ragbus declares in this namespace for the RAG pipeline:
        stage queues, DLQs, retry queues and sinks (see ``docs/rabbitmq.md``)."""
        topology = Topology(exchange=self.exchange, prefix=self.prefix)
        names = [topology.sink_queue(sink) for sink in rag.sinks]
        for stage in rag.stage_names:
            names += topology.stage_queues(stage)
        return names


async def delete_namespace(url: str, exchange: str | None, queues: Iterable[str]) -> None:
    """Delete ``queues`` (with their messages) and ``exchange``; missing ones are skipped.

    Parameters:
        url: the AMQP URL.
        exchange: the exchange to delete (None: none).
        queues: the queue names to delete.
    """
    entities = [("queue", name) for name in queues]
    if exchange:
        entities.append(("exchange", exchange))
    connection = await aio_pika.connect(url)
    try:
        for kind, name in entities:
            # a failed delete closes the channel: one channel per entity
            channel = await connection.channel(publisher_confirms=False)
            with contextlib.suppress(AMQPError):
                if kind == "exchange":
                    await channel.exchange_delete(name)
                else:
                    await channel.queue_delete(name)
            with contextlib.suppress(AMQPError, RuntimeError):
                await channel.close()
    finally:
        await connection.close()
