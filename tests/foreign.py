"""Publishing raw bodies as another service would: no ragbus code on the sending side.

The bus interface publishes envelopes only; tests of invalid input send bodies the way
a foreign producer does (RabbitMQ: its own aio-pika connection; the memory bus, which
no other process can reach, has a backend-only ``inject``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import aio_pika

from ragbus.bus.base import Bus
from ragbus.bus.memory import MemoryBus
from ragbus.bus.rabbitmq import RabbitMQBus


async def publish_foreign(
    url: str,
    exchange: str,
    routing_key: str,
    body: bytes,
    *,
    headers: Mapping[str, Any] | None = None,
    message_id: str | None = None,
) -> None:
    """Publish ``body`` on its own connection: persistent, confirmed, ``mandatory``.

    Parameters:
        url: the AMQP URL.
        exchange: the exchange's name ("" for the default exchange, to reach one queue).
        routing_key: the event type, or a queue's name on the default exchange.
        body: the bytes to send, as they are.
        headers: message headers (default none).
        message_id: the ``message_id`` property (default: a fresh UUID).
    """
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        target = (
            channel.default_exchange if exchange == "" else await channel.get_exchange(exchange)
        )
        await target.publish(
            aio_pika.Message(
                body,
                headers=dict(headers) if headers is not None else None,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message_id or str(uuid.uuid4()),
            ),
            routing_key,
            mandatory=True,
        )
    finally:
        await connection.close()


async def publish_raw(bus: Bus, body: bytes, event_type: str) -> None:
    """Send ``body`` under ``event_type`` to the stages of ``bus`` as a foreign producer
    would, unvalidated.

    Parameters:
        bus: a memory bus, or a RabbitMQ bus (its URL and exchange are used).
        body: the bytes to send.
        event_type: the routing key.
    """
    if isinstance(bus, MemoryBus):
        await bus.inject(body, event_type)
        return
    assert isinstance(bus, RabbitMQBus), bus
    await publish_foreign(bus.url, bus.topology.exchange, event_type, body)
