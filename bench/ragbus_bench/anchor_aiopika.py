"""The RabbitMQ anchor, hand-written on raw aio-pika.

The same work as ragbus on RabbitMQ (the same retrieve and generate handlers, JSON
encode and decode of the envelope on every hop) with the same durability (see
:mod:`ragbus_bench.amqp_chain`), none of the framework: no consumer groups,
guards, dead letters, retries, metrics or watchdog. One connection; a publisher
channel with confirms; one channel per consumer with ``prefetch = concurrency``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
from aio_pika.abc import (
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    DeliveryMode,
    ExchangeType,
)

from ragbus.events import Envelope
from ragbus.runtime.stage import Handler
from ragbus_bench.amqp_chain import (
    ANSWER_TYPE,
    COLLECTOR_ARGUMENTS,
    QUORUM_ARGUMENTS,
    AnswerWaiters,
    ChainStage,
    chain_stages,
    decode,
    encode,
    new_query,
)
from ragbus_bench.load import ASK_TIMEOUT_S, AskOne
from ragbus_bench.namespace import Namespace, delete_namespace

logger = logging.getLogger(__name__)


async def _publish(exchange: AbstractExchange, event: Envelope) -> None:
    """Publish ``event`` persistent and mandatory; returns when the broker confirmed."""
    message = aio_pika.Message(
        encode(event),
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=str(event.id),
        type=event.type,
        correlation_id=str(event.correlation_id),
    )
    await exchange.publish(message, routing_key=event.type, mandatory=True)


async def _consume_stage(
    connection: AbstractConnection,
    exchange: AbstractExchange,
    stage: ChainStage,
    namespace: Namespace,
    prefetch: int,
) -> None:
    """Consume ``stage``'s quorum queue: handle, publish (confirmed), then ack."""
    channel = await connection.channel(publisher_confirms=False)
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.declare_queue(
        namespace.queue(stage.name), durable=True, arguments=QUORUM_ARGUMENTS
    )
    await queue.bind(exchange, routing_key=stage.consumes)
    handler: Handler = stage.handler

    async def on_message(message: AbstractIncomingMessage) -> None:
        try:
            for output in await handler(decode(message.body)):
                await _publish(exchange, output)
        except Exception:
            logger.exception("anchor stage %s failed; message dropped", stage.name)
            await message.reject(requeue=False)
        else:
            await message.ack()

    await queue.consume(on_message)


async def _consume_answers(
    connection: AbstractConnection,
    exchange: AbstractExchange,
    namespace: Namespace,
    prefetch: int,
    waiters: AnswerWaiters,
) -> None:
    """Consume the answers from an exclusive queue and hand them to ``waiters``."""
    channel = await connection.channel(publisher_confirms=False)
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.declare_queue(
        namespace.queue(f"answers.{uuid.uuid4().hex[:8]}"),
        exclusive=True,
        auto_delete=True,
        arguments=COLLECTOR_ARGUMENTS,
    )
    await queue.bind(exchange, routing_key=ANSWER_TYPE)

    async def on_answer(message: AbstractIncomingMessage) -> None:
        waiters.deliver(message.body)
        await message.ack()

    await queue.consume(on_answer)


@asynccontextmanager
async def aiopika_chain(
    url: str, retrieve: Handler, generate: Handler, prefetch: int
) -> AsyncIterator[AskOne]:
    """The chain on raw aio-pika in a fresh namespace, consuming while the context is
    open (its namespace is deleted on exit); yields its warmed-up ``ask_one``.

    Parameters:
        url: the AMQP URL.
        retrieve, generate: the pipeline's handlers (``rag_handlers(settings)``).
        prefetch: each consumer's ``prefetch_count`` (the benchmark's concurrency).
    """
    namespace = Namespace.fresh("aiopika")
    stages = chain_stages(retrieve, generate)
    waiters = AnswerWaiters()
    connection = await aio_pika.connect(url)
    try:
        publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await publisher.declare_exchange(
            namespace.exchange, ExchangeType.TOPIC, durable=True
        )
        await _consume_answers(connection, exchange, namespace, prefetch, waiters)
        for stage in stages:
            await _consume_stage(connection, exchange, stage, namespace, prefetch)

        async def ask_one(number: int) -> object:
            query = new_query(number)
            answer = waiters.expect(query)
            try:
                await _publish(exchange, query)
                async with asyncio.timeout(ASK_TIMEOUT_S):
                    return await answer
            finally:
                waiters.forget(query)

        await ask_one(-1)  # warm up, outside the timed run
        yield ask_one
    finally:
        await connection.close()
        await delete_namespace(
            url, namespace.exchange, [namespace.queue(stage.name) for stage in stages]
        )
