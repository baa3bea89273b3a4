"""Consuming: the stages this process serves, and how each delivery is settled.

Each subscribed stage has its own channel with ``prefetch = concurrency`` and one
consumer with manual acks; each delivery runs the handler in its own task. The
handler contract of :mod:`ragbus.bus.base`: return -> ack;
:class:`~ragbus.bus.base.Requeue` -> the message is republished to the stage's queue
and the delivery acked (on RabbitMQ 3.10 a ``nack(requeue=True)`` and a channel closed
with unacked messages both count towards the quorum queue's delivery limit, a
republish does not); any other exception -> ``reject(requeue=True)``, which counts, so
a poison message ends in the DLQ with reason ``delivery_limit``.

After the connection was lost and reconnected (maybe to another node of the cluster),
:meth:`Consumers.restore` gives every subscription a new channel, declares its queues
again and consumes again; the watchdog retries what that could not restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import aiormq
import aiormq.abc
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from ragbus.bus.base import InboundMessage, MessageHandler, Requeue
from ragbus.bus.errors import BusError
from ragbus.bus.rabbitmq.connection import BrokerConnection
from ragbus.bus.rabbitmq.publisher import Publisher, build_message
from ragbus.bus.rabbitmq.topology import Declarer, Topology
from ragbus.errors import QueueFullError

logger = logging.getLogger(__name__)

#: Headers the broker sets on delivery; dropped when a message is republished.
_BROKER_DELIVERY_HEADERS: Final = frozenset({"x-delivery-count"})

#: Seconds to wait for the broker's answer when cancelling or closing during shutdown.
RPC_TIMEOUT_S: Final = 5.0


@dataclass(eq=False)
class Subscription:
    """One stage this process serves, and its consuming state.

    Parameters:
        name: the stage (consumer group).
        event_types: the event types it consumes.
        handler: called once per delivery.
        concurrency: handlers in flight at most (the channel's prefetch).
        ephemeral: an exclusive, auto-deleted queue living with the connection.
        queue_name: the queue it consumes.
    """

    name: str
    event_types: tuple[str, ...]
    handler: MessageHandler
    concurrency: int
    ephemeral: bool
    queue_name: str
    channel: AbstractChannel | None = None
    queue: AbstractQueue | None = None
    consumer_tag: str | None = None
    #: The channel under ``channel`` that the consumer is registered on (aio-pika's
    #: ``get_underlay_channel()``); refreshed by the watchdog: a reconnect replaces it.
    underlay: aiormq.abc.AbstractChannel | None = None
    paused: bool = False
    misses: int = 0
    in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def alive(self) -> bool:
        """Whether the consumer is registered on an open channel, as last seen."""
        channel, tag, underlay = self.channel, self.consumer_tag, self.underlay
        if channel is None or tag is None or channel.is_closed:
            return False
        # aiormq's Channel keeps its registered consumers in the public ``consumers``
        # (aio-pika reads it the same way when it restores consumers).
        return (
            isinstance(underlay, aiormq.Channel)
            and not underlay.is_closed
            and tag in underlay.consumers
        )


class Consumers:
    """The subscriptions of one bus, consumed on the bus's connection.

    Parameters:
        connection: the bus's connection.
        topology: the queue names and arguments.
        declarer: declares a durable stage's queues before it is consumed.
        publisher: republishes a requeued message.
    """

    def __init__(
        self,
        connection: BrokerConnection,
        topology: Topology,
        declarer: Declarer,
        publisher: Publisher,
    ) -> None:
        self.connection = connection
        self.topology = topology
        self.declarer = declarer
        self.publisher = publisher
        self.subscriptions: dict[str, Subscription] = {}
        self.started = False
        connection.on_restore(self.restore)

    def add(
        self,
        stage: str,
        event_types: Sequence[str],
        handler: MessageHandler,
        *,
        concurrency: int,
        ephemeral: bool,
    ) -> Subscription:
        """Register ``stage`` (not consumed until :meth:`open`).

        Parameters:
            stage, event_types, handler, concurrency, ephemeral: see
                :meth:`ragbus.bus.base.Bus.subscribe`.
        """
        if stage in self.subscriptions:
            raise ValueError(f"stage {stage!r} is already subscribed")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        queue_name = (
            self.topology.ephemeral_queue(stage, uuid.uuid4().hex[:12])
            if ephemeral
            else self.topology.stage_queue(stage)
        )
        subscription = Subscription(
            name=stage,
            event_types=tuple(event_types),
            handler=handler,
            concurrency=concurrency,
            ephemeral=ephemeral,
            queue_name=queue_name,
        )
        self.subscriptions[stage] = subscription
        return subscription

    @property
    def healthy(self) -> bool:
        """Every non-paused stage has a live consumer (when started)."""
        return not self.started or all(s.alive for s in self.subscriptions.values() if not s.paused)

    # -- opening and closing -------------------------------------------------------------

    async def open(self, subscription: Subscription) -> None:
        """Make sure ``subscription`` has an open channel, its queue and (unless paused or
        stopped) a consumer."""
        async with subscription.lock:
            await self.open_locked(subscription)

    async def open_locked(self, subscription: Subscription) -> None:
        """:meth:`open`, with the subscription's lock held by the caller."""
        if not subscription.ephemeral:
            await self.declarer.stage(subscription.name, subscription.event_types)
        if subscription.channel is None or subscription.channel.is_closed:
            await self.close_channel(subscription)
            channel = await self.connection.new_channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=subscription.concurrency)
            subscription.channel = channel
            subscription.queue = await self._declare_queue(subscription, channel)
        elif subscription.ephemeral and subscription.consumer_tag is None:
            # An auto-delete queue disappears with its last consumer (pause): redeclare it.
            assert subscription.queue is not None
            await subscription.queue.declare()
            for event_type in subscription.event_types:
                await subscription.queue.bind(self.topology.exchange, event_type)
        if subscription.paused or not self.started or subscription.consumer_tag is not None:
            return
        assert subscription.queue is not None and subscription.channel is not None
        subscription.consumer_tag = await subscription.queue.consume(
            self._on_message(subscription),
            consumer_tag=f"ragbus.{subscription.name}.{uuid.uuid4().hex[:12]}",
        )
        subscription.underlay = await subscription.channel.get_underlay_channel()
        subscription.misses = 0
        logger.debug("stage %s: consuming %s", subscription.name, subscription.queue_name)

    async def restore(self) -> None:
        """After a reconnect (maybe to another node): give every subscription a new
        channel, declare its queues again and consume again (unless paused or stopped).
        A subscription that cannot be restored now is logged and left to the watchdog."""
        if not self.started:
            return
        for subscription in list(self.subscriptions.values()):
            try:
                async with subscription.lock:
                    await self.close_channel(subscription)  # it died with the connection
                    if self.started:
                        await self.open_locked(subscription)
            except Exception as exc:
                logger.warning(
                    "stage %s: consuming again after the reconnect failed (%r); the "
                    "watchdog will retry",
                    subscription.name,
                    exc,
                )

    async def _declare_queue(
        self, subscription: Subscription, channel: AbstractChannel
    ) -> AbstractQueue:
        """Declare the stage's queue on its channel and bind it (an ephemeral queue is
        created here, on the node the connection is on)."""
        if subscription.ephemeral:
            queue = await channel.declare_queue(
                subscription.queue_name,
                exclusive=True,
                auto_delete=True,
                arguments={"x-queue-type": "classic"},
            )
        else:
            queue = await channel.declare_queue(
                subscription.queue_name,
                durable=True,
                arguments=self.topology.stage_arguments(subscription.name),
            )
        for event_type in subscription.event_types:
            await queue.bind(self.topology.exchange, event_type)
        return queue

    async def cancel(self, subscription: Subscription) -> None:
        """Cancel the stage's consumer. When that cannot be done (no connection, or the
        broker does not answer), close the stage's channel instead, so that aio-pika does
        not restore the consumer after a reconnect."""
        async with subscription.lock:
            tag, subscription.consumer_tag = subscription.consumer_tag, None
            if tag is None or subscription.queue is None:
                return
            if self.connection.is_connected:
                try:
                    await asyncio.wait_for(subscription.queue.cancel(tag), RPC_TIMEOUT_S)
                    return
                except Exception as exc:
                    logger.warning(
                        "stage %s: cancelling the consumer failed (%r); closing its channel",
                        subscription.name,
                        exc,
                    )
            await self.close_channel(subscription)

    async def close_channel(self, subscription: Subscription) -> None:
        """Close the stage's channel: its unacknowledged messages go back to the queue."""
        channel, subscription.channel = subscription.channel, None
        subscription.queue = None
        subscription.consumer_tag = None
        subscription.underlay = None
        if channel is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), RPC_TIMEOUT_S)

    async def refresh(self, subscription: Subscription) -> None:
        """Look up the channel the consumer is registered on now (a reconnect replaces
        it), for :attr:`Subscription.alive`."""
        channel = subscription.channel
        if channel is None or channel.is_closed or subscription.consumer_tag is None:
            return
        with contextlib.suppress(Exception):
            subscription.underlay = await asyncio.wait_for(
                channel.get_underlay_channel(), RPC_TIMEOUT_S
            )

    async def stop(self, grace: float) -> None:
        """Cancel every consumer, wait up to ``grace`` seconds for in-flight handlers,
        cancel the rest and close the stage channels: the broker redelivers what was not
        acknowledged."""
        self.started = False
        for subscription in self.subscriptions.values():
            await self.cancel(subscription)
        await asyncio.sleep(0)  # let deliveries that preceded the cancel-ok be dispatched
        deadline = time.monotonic() + max(grace, 0.0)
        while True:
            in_flight = {t for s in self.subscriptions.values() for t in s.in_flight}
            remaining = deadline - time.monotonic()
            if not in_flight or remaining <= 0:
                break
            await asyncio.wait(in_flight, timeout=remaining)
        pending = {t for s in self.subscriptions.values() for t in s.in_flight}
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for subscription in self.subscriptions.values():
            async with subscription.lock:
                await self.close_channel(subscription)

    # -- delivering and settling ---------------------------------------------------------

    def _on_message(
        self, subscription: Subscription
    ) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        """The consumer callback: run the handler in its own task, so a closing channel
        does not cancel it and up to ``concurrency`` (the prefetch) run at once."""

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.create_task(self._deliver(subscription, message))
            subscription.in_flight.add(task)
            task.add_done_callback(subscription.in_flight.discard)

        return on_message

    async def _deliver(self, subscription: Subscription, message: AbstractIncomingMessage) -> None:
        headers = message.headers
        count = headers.get("x-delivery-count") if headers else None
        inbound = InboundMessage(
            body=message.body,
            stage=subscription.name,
            redelivered=bool(message.redelivered),
            delivery_count=1 + count if isinstance(count, int) else 1,
            headers=headers,
        )
        try:
            await subscription.handler(inbound)
        except Requeue:
            await self._requeue(subscription, message)
        except Exception as exc:
            logger.warning(
                "stage %s: delivery %d failed, redelivering: %r",
                subscription.name,
                inbound.delivery_count,
                exc,
            )
            # Ephemeral (classic) queues have no delivery limit: redeliver once only.
            requeue = not (subscription.ephemeral and message.redelivered)
            await _settle(subscription, message.reject(requeue=requeue), "reject")
        else:
            await _settle(subscription, message.ack(), "ack")

    async def _requeue(self, subscription: Subscription, message: AbstractIncomingMessage) -> None:
        """Put ``message`` back without counting a delivery: republish it to the stage's
        queue (confirmed), then ack it. Ephemeral queues count nothing: nack-requeue."""
        if subscription.ephemeral:
            await _settle(subscription, message.nack(requeue=True), "nack")
            return
        headers = {
            key: value
            for key, value in (message.headers or {}).items()
            if key not in _BROKER_DELIVERY_HEADERS
        }
        copy = build_message(
            message.body,
            event_type=message.type,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            priority=message.priority,
            reply_to=message.reply_to,
            timestamp=message.timestamp,
            app_id=message.app_id,
        )
        try:
            await self.publisher.to_queue(subscription.queue_name, copy)
        except (BusError, QueueFullError, RuntimeError) as exc:
            logger.warning(
                "stage %s: requeue by republish failed (%r); requeueing by nack",
                subscription.name,
                exc,
            )
            await _settle(subscription, message.nack(requeue=True), "nack")
            return
        await _settle(subscription, message.ack(), "ack")


async def _settle(subscription: Subscription, settling: Awaitable[None], what: str) -> None:
    """Await an ack/nack/reject; on a closed channel the broker redelivers anyway."""
    try:
        await settling
    except Exception as exc:
        logger.warning(
            "stage %s: %s failed (%r); the broker will redeliver the message",
            subscription.name,
            what,
            exc,
        )
