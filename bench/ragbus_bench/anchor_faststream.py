"""The RabbitMQ anchor, written with FastStream (``RabbitBroker``).

The same chain, work and durability as :mod:`ragbus_bench.anchor_aiopika` (see
:mod:`ragbus_bench.amqp_chain`), in idiomatic FastStream: subscribers on quorum
``RabbitQueue``s, each with its own ``Channel(prefetch_count=concurrency)`` and
``AckPolicy.MANUAL``; the handler takes the decoded ``Envelope`` (FastStream decodes the
JSON and validates it) and publishes its outputs with ``broker.publish(...,
persist=True)`` on the broker's default channel (publisher confirms, ``mandatory``),
then acks. Per-message logging is off (``logger=None``), as ragbus logs no message.

Needs ``faststream[rabbit]`` (the ``dev`` extra); this module imports it at the top, so
import this module lazily.

No ``from __future__ import annotations`` here: FastStream resolves the handlers'
annotations at run time.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from faststream import AckPolicy
from faststream.rabbit import (
    Channel,
    ExchangeType,
    QueueType,
    RabbitBroker,
    RabbitExchange,
    RabbitMessage,
    RabbitQueue,
)

from ragbus.events import Envelope
from ragbus.runtime.stage import Handler
from ragbus_bench.amqp_chain import (
    ANSWER_TYPE,
    AnswerWaiters,
    ChainStage,
    chain_stages,
    new_query,
)
from ragbus_bench.load import ASK_TIMEOUT_S, AskOne
from ragbus_bench.namespace import Namespace, delete_namespace

StageFunction = Callable[[Envelope, RabbitMessage], Awaitable[None]]
AnswerFunction = Callable[[dict[str, Any], RabbitMessage], Awaitable[None]]


def _stage_function(
    broker: RabbitBroker, exchange: RabbitExchange, handler: Handler
) -> StageFunction:
    """A subscriber function: handle the envelope, publish each output, then ack."""

    async def handle(event: Envelope, message: RabbitMessage) -> None:
        try:
            outputs = await handler(event)
            for output in outputs:
                await publish(broker, exchange, output)
        except Exception:
            await message.reject(requeue=False)
            raise
        await message.ack()

    return handle


def _answer_function(waiters: AnswerWaiters) -> AnswerFunction:
    """A subscriber function handing each answer to ``waiters``, then acking it."""

    async def collect(answer: dict[str, Any], message: RabbitMessage) -> None:
        waiters.deliver(answer)
        await message.ack()

    return collect


async def publish(broker: RabbitBroker, exchange: RabbitExchange, event: Envelope) -> None:
    """Publish ``event`` persistent and mandatory; returns when the broker confirmed."""
    await broker.publish(
        event,
        exchange=exchange,
        routing_key=event.type,
        persist=True,
        mandatory=True,
        message_id=str(event.id),
        message_type=event.type,
        correlation_id=str(event.correlation_id),
    )


def build_broker(
    url: str, stages: list[ChainStage], namespace: Namespace, prefetch: int, waiters: AnswerWaiters
) -> tuple[RabbitBroker, RabbitExchange]:
    """A broker with one subscriber per stage and one for the answers (not started).

    Parameters:
        url: the AMQP URL.
        stages: the chain's working stages.
        namespace: names of the exchange and queues.
        prefetch: each subscriber channel's ``prefetch_count``.
        waiters: where answers go.
    """
    broker = RabbitBroker(
        url,
        default_channel=Channel(publisher_confirms=True, on_return_raises=True),
        logger=None,
        graceful_timeout=5.0,
    )
    exchange = RabbitExchange(namespace.exchange, type=ExchangeType.TOPIC, durable=True)
    for stage in stages:
        queue = RabbitQueue(
            namespace.queue(stage.name),
            queue_type=QueueType.QUORUM,
            durable=True,
            routing_key=stage.consumes,
        )
        broker.subscriber(
            queue,
            exchange,
            channel=Channel(prefetch_count=prefetch),
            ack_policy=AckPolicy.MANUAL,
        )(_stage_function(broker, exchange, stage.handler))
    answers = RabbitQueue(
        namespace.queue(f"answers.{uuid.uuid4().hex[:8]}"),
        durable=False,
        exclusive=True,
        auto_delete=True,
        routing_key=ANSWER_TYPE,
    )
    broker.subscriber(
        answers,
        exchange,
        channel=Channel(prefetch_count=prefetch),
        ack_policy=AckPolicy.MANUAL,
    )(_answer_function(waiters))
    return broker, exchange


@asynccontextmanager
async def faststream_chain(
    url: str, retrieve: Handler, generate: Handler, prefetch: int
) -> AsyncIterator[AskOne]:
    """The chain on FastStream in a fresh namespace, consuming while the context is
    open (its namespace is deleted on exit); yields its warmed-up ``ask_one``.

    Parameters:
        url: the AMQP URL.
        retrieve, generate: the pipeline's handlers (``rag_handlers(settings)``).
        prefetch: each subscriber channel's ``prefetch_count`` (the benchmark's
            concurrency).
    """
    namespace = Namespace.fresh("faststream")
    stages = chain_stages(retrieve, generate)
    waiters = AnswerWaiters()
    broker, exchange = build_broker(url, stages, namespace, prefetch, waiters)
    try:
        await broker.start()

        async def ask_one(number: int) -> object:
            query = new_query(number)
            answer = waiters.expect(query)
            try:
                await publish(broker, exchange, query)
                async with asyncio.timeout(ASK_TIMEOUT_S):
                    return await answer
            finally:
                waiters.forget(query)

        await ask_one(-1)  # warm up, outside the timed run
        yield ask_one
    finally:
        await broker.stop()
        await delete_namespace(
            url, namespace.exchange, [namespace.queue(stage.name) for stage in stages]
        )
