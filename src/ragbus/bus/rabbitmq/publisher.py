"""Publishing: the one message builder, and confirmed, mandatory publishes.

Every message the bus sends is built by :func:`build_message`. Publishes go through one
channel with publisher confirms, ``mandatory=True`` and ``on_return_raises=True``
(without it aio-pika ignores a returned message); confirms are pipelined, so concurrent
publishes do not wait for each other. The broker's answers become the bus's errors:
a returned message is :class:`~ragbus.bus.errors.UnroutableError`, a lost connection
:class:`~ragbus.bus.errors.PublishNotConfirmedError`, and a nack (a bounded stage queue
is full: ``x-overflow: reject-publish``) is backpressure: the publish backs off and
tries again for as long as its budget allows (:mod:`ragbus.bus.backpressure`), then
raises :class:`~ragbus.errors.QueueFullError`.

The channel is reopened on demand: a publish that finds it closed (the connection was
lost, or the broker closed the channel) waits up to :data:`RECONNECT_WAIT_S` seconds for
the connection to be back, on whichever node, and opens a new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, DeliveryMode, ExchangeType
from aiormq import spec
from aiormq.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError, PublishError

from ragbus.bus.backpressure import (
    DEFAULT_QUEUE_FULL_WAIT_S,
    Refused,
    until_accepted,
    wait_budget,
)
from ragbus.bus.base import check_publish_options
from ragbus.bus.errors import BusError, PublishNotConfirmedError, UnroutableError
from ragbus.bus.rabbitmq.connection import BrokerConnection
from ragbus.bus.rabbitmq.topology import Topology
from ragbus.events import Envelope

logger = logging.getLogger(__name__)

#: Time to live of a transient event (``answer_token``) in a listener's queue, in ms:
#: past it, the interim progress is stale and the broker drops it.
TRANSIENT_TTL_MS: Final = 60_000

#: Content type of every event.
JSON: Final = "application/json"

#: How long a publish waits for a lost connection to come back (to any node of the
#: cluster) before it fails with PublishNotConfirmedError, in seconds.
RECONNECT_WAIT_S: Final = 10.0

#: Failures of a publish that mean "not confirmed" (nack, lost channel or connection).
_NOT_CONFIRMED: Final = (
    AMQPError,
    ConnectionError,
    ChannelInvalidStateError,
    asyncio.TimeoutError,
)


def build_message(
    body: bytes,
    *,
    event_type: str | None,
    message_id: str | None,
    correlation_id: str | None = None,
    headers: Mapping[str, Any] | None = None,
    content_type: str | None = JSON,
    persistent: bool = True,
    expiration_ms: int | None = None,
    **properties: Any,
) -> aio_pika.Message:
    """A message for the broker: the one place where ragbus sets message properties.

    Parameters:
        body: the body (an envelope's JSON, or a dead letter's original body).
        event_type: the ``type`` property: the event type, when known.
        message_id: the ``message_id`` property: the event id, when known.
        correlation_id: the ``correlation_id`` property (default none).
        headers: the headers (default none).
        content_type: the ``content_type`` property (default ``application/json``).
        persistent: ``delivery_mode`` 2, written to disk (default True: aio-pika's own
            default is non-persistent).
        expiration_ms: a per-message time to live in milliseconds (default none).
        properties: other AMQP properties passed through as they came (a requeued
            message keeps its ``priority``, ``reply_to``, ``timestamp``, ...).
    """
    return aio_pika.Message(
        body,
        headers=dict(headers) if headers is not None else None,
        content_type=content_type,
        delivery_mode=DeliveryMode.PERSISTENT if persistent else DeliveryMode.NOT_PERSISTENT,
        expiration=expiration_ms / 1000 if expiration_ms is not None else None,
        message_id=message_id,
        type=event_type,
        correlation_id=correlation_id,
        **properties,
    )


def envelope_message(envelope: Envelope, *, transient: bool = False) -> aio_pika.Message:
    """The message of ``envelope``: persistent, or, when ``transient``, non-persistent
    with a time to live of :data:`TRANSIENT_TTL_MS`."""
    return build_message(
        envelope.encode(),
        event_type=envelope.type,
        message_id=str(envelope.id),
        correlation_id=str(envelope.correlation_id),
        persistent=not transient,
        expiration_ms=TRANSIENT_TTL_MS if transient else None,
    )


class Publisher:
    """Publishes on the bus's confirmed channel.

    Parameters:
        connection: the bus's connection.
        topology: where events go (the exchange; stage, retry and dead-letter queues).
        queue_full_wait_s: how long a publish refused by a full queue keeps trying, in
            seconds, at most until the event's deadline (default 5).
    """

    def __init__(
        self,
        connection: BrokerConnection,
        topology: Topology,
        *,
        queue_full_wait_s: float = DEFAULT_QUEUE_FULL_WAIT_S,
    ) -> None:
        self.connection = connection
        self.topology = topology
        self.queue_full_wait_s = queue_full_wait_s
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._reopening = asyncio.Lock()

    async def open(self) -> None:
        """Open the confirmed channel and declare the exchange on it."""
        channel = await self.connection.new_channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await channel.declare_exchange(
            self.topology.exchange, ExchangeType.TOPIC, durable=True
        )
        self._channel = channel

    def forget(self) -> None:
        """Drop the channel (its connection is closing)."""
        self._channel = self._exchange = None

    async def _ready(self, *, wait: bool = True) -> tuple[AbstractChannel, AbstractExchange]:
        """The open channel and its exchange, reopened first if it was closed.

        Parameters:
            wait: wait up to :data:`RECONNECT_WAIT_S` seconds for a lost connection to
                come back (default True); else fail at once.

        Raises:
            BusError: the bus is not connected (``connect()`` was not called).
            PublishNotConfirmedError: the connection is lost and did not come back.
        """
        channel, exchange = self._channel, self._exchange
        if channel is not None and exchange is not None and not channel.is_closed:
            return channel, exchange
        if not self.connection.is_open:
            raise BusError("the bus is not connected: call connect() first")
        async with self._reopening:
            channel, exchange = self._channel, self._exchange
            if channel is not None and exchange is not None and not channel.is_closed:
                return channel, exchange
            if not await self.connection.wait_connected(RECONNECT_WAIT_S if wait else 0):
                raise PublishNotConfirmedError(
                    "publish not confirmed: the connection to the RabbitMQ broker at "
                    f"{self.connection.masked_url} is lost and not back yet"
                )
            try:
                await self.open()
            except (*_NOT_CONFIRMED, BusError) as exc:  # lost again while opening
                raise PublishNotConfirmedError(
                    f"publish not confirmed: cannot open a channel ({exc!r})"
                ) from exc
            assert self._channel is not None and self._exchange is not None
            return self._channel, self._exchange

    async def publish(
        self,
        envelope: Envelope,
        *,
        stage: str | None = None,
        delay: float | None = None,
        transient: bool = False,
    ) -> None:
        """Publish ``envelope``; see :meth:`ragbus.bus.base.Bus.publish`.

        Persistent, confirmed and ``mandatory``: to the exchange with its type as
        routing key; with ``stage``, to ``<prefix>.<stage>`` only; with ``delay`` too,
        to the stage's retry queue whose tier suits the delay (it reaches the stage
        queue when the tier's TTL expires). A ``transient`` event goes to the exchange
        non-persistent, not ``mandatory``, with a TTL: a queue bound to its type gets
        it, else the broker drops it; failures are logged and dropped. It goes through
        the same channel, so a stage's transient events reach a listener before the
        outputs it publishes next.

        A stage queue that is full refuses the message (a nack): the publish tries again
        with backoff for up to ``queue_full_wait_s`` seconds or until the event's
        deadline, whichever comes first, then raises
        :class:`~ragbus.errors.QueueFullError`. For an event that several stages consume,
        each try goes to all of them (the broker cannot say which refused it): a stage
        may receive it twice and drops the copy by event id.

        Parameters:
            envelope: the event.
            stage: only this stage (default: every stage consuming the type).
            delay: seconds before it reaches ``stage`` (default: now).
            transient: best effort, never raises but ``CancelledError`` (default False).
        """
        check_publish_options(stage, delay, transient)
        if transient:
            try:
                message = envelope_message(envelope, transient=True)
                _, exchange = await self._ready(wait=False)
                await exchange.publish(message, envelope.type, mandatory=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("transient %s %s dropped: %r", envelope.type, envelope.id, exc)
            return
        message = envelope_message(envelope)
        if stage is None:
            where = f"a queue of the stages consuming {envelope.type!r}"

            async def send() -> None:
                _, exchange = await self._ready()
                await self._send(exchange, envelope.type, message)

        else:
            queue = (
                self.topology.stage_queue(stage)
                if delay is None
                else self.topology.retry_queue_for(stage, delay)
            )
            where = f"queue {queue!r}"

            async def send() -> None:
                channel, _ = await self._ready()
                await self._send(channel.default_exchange, queue, message)

        await until_accepted(
            send, budget=wait_budget(envelope, self.queue_full_wait_s), where=where
        )

    async def to_queue(self, queue: str, message: aio_pika.Message) -> None:
        """Publish ``message`` to ``queue`` only (the default exchange), confirmed and
        ``mandatory``, once: :class:`UnroutableError` when the queue does not exist,
        :class:`~ragbus.errors.QueueFullError` at once when it is full.

        Parameters:
            queue: the queue's name (a stage, retry or dead-letter queue).
            message: the message (see :func:`build_message`).
        """
        channel, _ = await self._ready()
        await until_accepted(
            lambda: self._send(channel.default_exchange, queue, message),
            budget=0,
            where=f"queue {queue!r}",
        )

    async def _send(
        self, exchange: AbstractExchange, routing_key: str, message: aio_pika.Message
    ) -> None:
        """Publish with confirm and ``mandatory``; translate the broker's answers (a nack
        is :class:`~ragbus.bus.backpressure.Refused`)."""
        try:
            await exchange.publish(message, routing_key, mandatory=True)
        except PublishError as exc:
            raise UnroutableError(
                f"no queue takes {message.type or 'the message'!r} "
                f"(exchange {exchange.name!r}, routing key {routing_key!r})"
            ) from exc
        except DeliveryError as exc:
            if isinstance(exc.frame, spec.Basic.Nack):
                # the one nack a bounded queue sends: x-overflow reject-publish, full
                raise Refused(routing_key) from exc
            raise PublishNotConfirmedError(f"the broker refused the message: {exc!r}") from exc
        except _NOT_CONFIRMED as exc:
            raise PublishNotConfirmedError(f"publish not confirmed: {exc!r}") from exc
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # aiormq cancels pending confirmations when the connection drops.
            raise PublishNotConfirmedError("publish not confirmed: connection lost") from exc
