"""The RabbitMQ bus (aio-pika): stages as durable quorum queues shared by many workers.

Topology (names and arguments in :mod:`ragbus.bus.rabbitmq_topology`, documented in
``docs/rabbitmq.md``): a durable topic exchange keyed by event type; per stage a quorum
queue with a delivery limit that dead-letters to the stage's DLQ, a classic DLQ, and one
classic retry queue per delay tier that feeds the stage's queue only.

Delivery: publisher confirms with ``mandatory`` (an unroutable event raises
:class:`~ragbus.bus.errors.UnroutableError`), persistent messages, manual acks, and
``prefetch = concurrency`` per stage. The handler contract of :mod:`ragbus.bus.base`:
return -> ack; :class:`~ragbus.bus.base.Requeue` -> the message is republished to the
stage's queue and the delivery acked (on RabbitMQ 3.10 a ``nack(requeue=True)`` and a
channel closed with unacked messages both count towards the quorum queue's delivery
limit, a republish does not); any other exception -> ``reject(requeue=True)``, which
counts, so a poison message ends in the DLQ with reason ``delivery_limit``.

Robustness: ``aio_pika.connect_robust`` restores channels, queues and consumers after a
reconnect, and a watchdog re-establishes any stage that still has no live consumer
(aio-pika issues #231 and #334).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aio_pika
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustQueue,
    DeliveryMode,
    ExchangeType,
)
from aiormq.exceptions import (
    AMQPError,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    DeliveryError,
    PublishError,
)
from pamqp import commands as spec

from ragbus.bus.base import (
    Bus,
    DeadLetter,
    DeadLetterFilter,
    InboundMessage,
    MessageHandler,
    Requeue,
)
from ragbus.bus.errors import BusError, PublishNotConfirmedError, UnroutableError
from ragbus.bus.rabbitmq_dead_letters import decode_dead_letter, encode_dead_letter
from ragbus.bus.rabbitmq_topology import (
    DEFAULT_DELAY_TIERS,
    DEFAULT_DELIVERY_LIMIT,
    Topology,
)
from ragbus.events import Envelope

if TYPE_CHECKING:
    from ragbus.config import Settings

logger = logging.getLogger(__name__)

#: Headers the broker sets on delivery; dropped when a message is republished.
_BROKER_DELIVERY_HEADERS = frozenset({"x-delivery-count"})

#: Failures of a publish that mean "not confirmed" (nack, lost channel or connection).
_NOT_CONFIRMED = (AMQPError, ConnectionError, ChannelInvalidStateError, asyncio.TimeoutError)

#: Watchdog checks a consumer may be missing before the watchdog rebuilds it (the first
#: miss may be aio-pika restoring it).
_MISSES_BEFORE_REBUILD = 2

#: Seconds to wait for the broker's answer when cancelling or closing during shutdown.
_RPC_TIMEOUT = 5.0

#: Time to live of a transient event (``answer_token``) in a listener's queue, in ms:
#: past it, the interim progress is stale and the broker drops it.
TRANSIENT_TTL_MS = 60_000


@dataclass(eq=False)
class _Subscription:
    """One stage this process serves, and its consuming state."""

    name: str
    event_types: tuple[str, ...]
    handler: MessageHandler
    concurrency: int
    ephemeral: bool
    queue_name: str
    channel: AbstractRobustChannel | None = None
    queue: AbstractRobustQueue | None = None
    consumer_tag: str | None = None
    paused: bool = False
    misses: int = 0
    in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RabbitMQBus(Bus):
    """A bus on a RabbitMQ broker.

    Parameters:
        url: the AMQP URL, e.g. ``amqp://guest:guest@127.0.0.1:5672/``.
        exchange: the durable topic exchange events are published to
            (default ``"ragbus.events"``).
        queue_prefix: prefix of every queue name (default ``"ragbus"``).
        dlq_path: ignored (dead letters live in RabbitMQ); accepted so factories can
            build either bus with the same arguments (default None).
        delivery_limit: ``x-delivery-limit`` of the stage queues: a message whose
            handler keeps raising is dead-lettered by the broker after
            ``delivery_limit + 1`` deliveries (default 20).
        delay_tiers: delays of the retry queues in seconds; ``publish_later`` uses the
            smallest tier at least as long as the delay, else the longest (default
            ``(1.0, 5.0, 30.0, 120.0)``).
        reconnect_interval: seconds between reconnection attempts (default 1.0).
        watchdog_interval: seconds between checks that every stage has a live consumer
            (default 2.0).
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "ragbus.events",
        queue_prefix: str = "ragbus",
        dlq_path: Path | None = None,
        delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
        delay_tiers: tuple[float, ...] = DEFAULT_DELAY_TIERS,
        reconnect_interval: float = 1.0,
        watchdog_interval: float = 2.0,
    ) -> None:
        del dlq_path  # dead letters live in the broker
        if delivery_limit < 1:
            raise ValueError("delivery_limit must be at least 1")
        if not delay_tiers or min(delay_tiers) <= 0:
            raise ValueError("delay_tiers must hold at least one positive delay")
        self.url = url
        self.topology = Topology(
            exchange=exchange,
            prefix=queue_prefix,
            delivery_limit=delivery_limit,
            delay_tiers=tuple(sorted(set(delay_tiers))),
        )
        self.reconnect_interval = reconnect_interval
        self.watchdog_interval = watchdog_interval
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._default_exchange: AbstractExchange | None = None
        self._subscriptions: dict[str, _Subscription] = {}
        self._known_stages: set[str] = set()
        self._dlq_declared: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._started = False

    @classmethod
    def from_settings(cls, settings: Settings) -> RabbitMQBus:
        """A bus configured from ``settings``: ``amqp_url``, ``exchange``, ``queue_prefix``,
        ``delivery_limit``, and ``redelivery_delays_s`` as the retry queues' delay tiers."""
        return cls(
            settings.amqp_url.get_secret_value(),
            exchange=settings.exchange,
            queue_prefix=settings.queue_prefix,
            delivery_limit=settings.delivery_limit,
            delay_tiers=tuple(settings.redelivery_delays_s),
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect (robustly), open the publisher channel and declare the exchange."""
        if self._connection is not None and not self._connection.is_closed:
            return
        connection = await aio_pika.connect_robust(
            self.url,
            reconnect_interval=self.reconnect_interval,
            client_properties={"connection_name": f"ragbus:{self.topology.prefix}"},
        )
        try:
            publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchange = await publisher.declare_exchange(
                self.topology.exchange, ExchangeType.TOPIC, durable=True
            )
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self._publisher = publisher
        self._default_exchange = publisher.default_exchange

    async def close(self) -> None:
        """Stop consuming at once (unfinished deliveries go back to the broker) and close
        the connection."""
        await self.stop(grace=0)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        connection, self._connection = self._connection, None
        self._publisher = self._exchange = self._default_exchange = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), _RPC_TIMEOUT)

    def subscribe(
        self,
        stage: str,
        event_types: Sequence[str],
        handler: MessageHandler,
        *,
        concurrency: int,
        ephemeral: bool = False,
    ) -> None:
        """Serve ``stage``; see :meth:`Bus.subscribe`.

        A durable stage consumes ``<prefix>.<stage>``; an ``ephemeral`` one consumes an
        exclusive, auto-deleted classic queue ``<prefix>.<stage>.<random>`` bound to
        ``event_types``, which lives as long as the connection and has no DLQ or retry
        queues. If the bus is already started, consuming begins in the background.
        """
        if stage in self._subscriptions:
            raise ValueError(f"stage {stage!r} is already subscribed")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        queue_name = (
            self.topology.ephemeral_queue(stage, uuid.uuid4().hex[:12])
            if ephemeral
            else self.topology.stage_queue(stage)
        )
        subscription = _Subscription(
            name=stage,
            event_types=tuple(event_types),
            handler=handler,
            concurrency=concurrency,
            ephemeral=ephemeral,
            queue_name=queue_name,
        )
        self._subscriptions[stage] = subscription
        if not ephemeral:
            self._known_stages.add(stage)
        if self._started:
            self._spawn(self._open_stage(subscription), name=f"ragbus:open:{stage}")

    @contextlib.asynccontextmanager
    async def _topology_channel(self, what: str) -> AsyncIterator[Any]:
        """A plain channel with the exchange declared, for declaring ``what``; a queue that
        exists with other arguments becomes a :class:`BusError`."""
        connection = self._require_connection()
        if connection.transport is None:
            raise BusError("not connected to the broker")
        channel = await connection.transport.connection.channel(publisher_confirms=False)
        try:
            await channel.exchange_declare(
                self.topology.exchange, exchange_type=ExchangeType.TOPIC.value, durable=True
            )
            yield channel
        except ChannelPreconditionFailed as exc:
            raise BusError(
                f"a queue or exchange of {what} exists with other arguments: {exc}"
            ) from exc
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def declare_sink(
        self,
        name: str,
        event_types: Sequence[str],
        *,
        max_length: int = 10_000,
        ttl_s: float = 3600,
    ) -> None:
        """Declare the bounded queue ``<prefix>.<name>`` bound to ``event_types``; see
        :meth:`Bus.declare_sink`."""
        topology = self.topology
        async with self._topology_channel(f"sink {name!r}") as channel:
            queue = topology.sink_queue(name)
            await channel.queue_declare(
                queue, durable=True, arguments=topology.sink_arguments(max_length, ttl_s)
            )
            for event_type in event_types:
                await channel.queue_bind(queue, topology.exchange, routing_key=event_type)

    async def declare(self, stage: str, event_types: Sequence[str]) -> None:
        """Declare ``stage``'s queues (stage queue and its bindings, DLQ, retry queues)
        without consuming. Idempotent; raises :class:`BusError` if a queue exists with
        other arguments."""
        topology = self.topology
        async with self._topology_channel(f"stage {stage!r}") as channel:
            await channel.queue_declare(
                topology.dead_letter_queue(stage),
                durable=True,
                arguments=topology.dead_letter_arguments(),
            )
            for tier in topology.delay_tiers:
                await channel.queue_declare(
                    topology.retry_queue(stage, tier),
                    durable=True,
                    arguments=topology.retry_arguments(stage, tier),
                )
            queue = topology.stage_queue(stage)
            await channel.queue_declare(
                queue, durable=True, arguments=topology.stage_arguments(stage)
            )
            for event_type in event_types:
                await channel.queue_bind(queue, topology.exchange, routing_key=event_type)
        self._known_stages.add(stage)
        self._dlq_declared.add(stage)

    async def start(self) -> None:
        """Declare and consume every subscribed stage (except paused ones), and start the
        watchdog."""
        self._require_connection()
        self._started = True
        for subscription in list(self._subscriptions.values()):
            await self._open_stage(subscription)
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = self._spawn(self._watch(), name="ragbus:watchdog")

    async def stop(self, grace: float = 30.0) -> None:
        """Cancel every consumer, wait up to ``grace`` seconds (default 30) for in-flight
        handlers, cancel the rest and close the stage channels: the broker redelivers what
        was not acknowledged."""
        self._started = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        for subscription in self._subscriptions.values():
            await self._cancel_consumer(subscription)
        await asyncio.sleep(0)  # let deliveries that preceded the cancel-ok be dispatched
        deadline = time.monotonic() + max(grace, 0.0)
        while True:
            in_flight = {t for s in self._subscriptions.values() for t in s.in_flight}
            remaining = deadline - time.monotonic()
            if not in_flight or remaining <= 0:
                break
            await asyncio.wait(in_flight, timeout=remaining)
        pending = {t for s in self._subscriptions.values() for t in s.in_flight}
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for subscription in self._subscriptions.values():
            async with subscription.lock:
                await self._close_stage_channel(subscription)

    async def pause(self, stage: str) -> None:
        """Stop taking new deliveries for ``stage`` (its consumer is cancelled); in-flight
        handlers finish and settle as usual."""
        subscription = self._subscriptions[stage]
        subscription.paused = True
        await self._cancel_consumer(subscription)

    async def resume(self, stage: str) -> None:
        """Consume ``stage`` again (if the bus is started)."""
        subscription = self._subscriptions[stage]
        subscription.paused = False
        if not self._started:
            return
        try:
            await self._open_stage(subscription)
        except Exception as exc:  # e.g. the broker is down: the watchdog retries
            logger.warning(
                "stage %s: resuming failed (%r); the watchdog will retry", subscription.name, exc
            )

    @property
    def healthy(self) -> bool:
        """Connected, and every started, non-paused stage has a live consumer."""
        if not self._connected():
            return False
        if not self._started:
            return True
        return all(self._consumer_alive(s) for s in self._subscriptions.values() if not s.paused)

    # -- publishing --------------------------------------------------------------------

    async def publish(self, envelope: Envelope, *, stage: str | None = None) -> None:
        """Publish ``envelope`` (confirmed, persistent, mandatory): to the exchange with its
        type as routing key, or, with ``stage``, to ``<prefix>.<stage>`` only.

        Raises :class:`UnroutableError` when no queue takes it, and
        :class:`PublishNotConfirmedError` on a nack or a lost connection.
        """
        message = aio_pika.Message(
            envelope.encode(),
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=str(envelope.id),
            type=envelope.type,
            correlation_id=str(envelope.correlation_id),
        )
        if stage is None:
            await self._send(self._require_exchange(), envelope.type, message)
        else:
            await self._send(self._require_default(), self.topology.stage_queue(stage), message)

    async def publish_transient(self, envelope: Envelope) -> None:
        """Publish ``envelope`` to the exchange non-persistent and not ``mandatory``, with a
        message TTL of :data:`TRANSIENT_TTL_MS`: a queue bound to its type gets it, else
        the broker drops it. Failures are logged and dropped (see
        :meth:`Bus.publish_transient`). It goes through the publisher channel, so a
        stage's transient events reach a listener before the outputs it publishes next."""
        try:
            message = aio_pika.Message(
                envelope.encode(),
                content_type="application/json",
                delivery_mode=DeliveryMode.NOT_PERSISTENT,
                expiration=TRANSIENT_TTL_MS / 1000,
                message_id=str(envelope.id),
                type=envelope.type,
                correlation_id=str(envelope.correlation_id),
            )
            await self._require_exchange().publish(message, envelope.type, mandatory=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.debug("transient %s %s dropped: %r", envelope.type, envelope.id, exc)

    async def publish_raw(self, body: bytes, event_type: str) -> None:
        """Publish an unvalidated ``body`` to the exchange under ``event_type`` (confirmed,
        persistent, mandatory, a fresh ``message_id``)."""
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=str(uuid.uuid4()),
            type=event_type,
        )
        await self._send(self._require_exchange(), event_type, message)

    async def publish_later(self, envelope: Envelope, *, stage: str, delay: float) -> None:
        """Publish ``envelope`` to the retry queue of ``stage`` whose tier suits ``delay``;
        it reaches ``<prefix>.<stage>`` (only) when the tier's TTL expires."""
        message = aio_pika.Message(
            envelope.encode(),
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=str(envelope.id),
            type=envelope.type,
            correlation_id=str(envelope.correlation_id),
        )
        queue = self.topology.retry_queue_for(stage, delay)
        await self._send(self._require_default(), queue, message)

    async def _send(
        self, exchange: AbstractExchange, routing_key: str, message: aio_pika.Message
    ) -> None:
        """Publish with confirm and ``mandatory``; translate the broker's answers."""
        try:
            await exchange.publish(message, routing_key, mandatory=True)
        except PublishError as exc:
            raise UnroutableError(
                f"no queue takes {message.type or 'the message'!r} "
                f"(exchange {exchange.name!r}, routing key {routing_key!r})"
            ) from exc
        except DeliveryError as exc:
            raise PublishNotConfirmedError(f"the broker refused the message: {exc!r}") from exc
        except _NOT_CONFIRMED as exc:
            raise PublishNotConfirmedError(f"publish not confirmed: {exc!r}") from exc
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # aiormq cancels pending confirmations when the connection drops.
            raise PublishNotConfirmedError("publish not confirmed: connection lost") from exc

    # -- dead letters ------------------------------------------------------------------

    async def dead_letter(self, letter: DeadLetter) -> None:
        """Publish ``letter`` to ``<prefix>.<stage>.dlq`` (confirmed, persistent): the body
        is the original event, the headers the failure record."""
        if letter.stage not in self._dlq_declared:
            await self._declare_dead_letter_queue(letter.stage)
        body, headers = encode_dead_letter(letter)
        envelope = letter.envelope or {}
        message = aio_pika.Message(
            body,
            headers=headers,
            content_type="application/json" if letter.envelope is not None else None,
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=str(envelope["id"]) if "id" in envelope else str(letter.id),
            type=str(envelope["type"]) if "type" in envelope else None,
            correlation_id=(
                str(envelope["correlation_id"]) if "correlation_id" in envelope else None
            ),
        )
        queue = self.topology.dead_letter_queue(letter.stage)
        await self._send(self._require_default(), queue, message)

    async def list_dead_letters(self, where: DeadLetterFilter) -> list[DeadLetter]:
        """The dead letters matching ``where``, oldest first; changes nothing.

        Scans the DLQs of ``where.stage``, or else of every stage this bus declared,
        subscribed or dead-lettered to (the broker cannot list queues over AMQP). Each
        message is fetched unacknowledged and returned to its queue when the scanning
        channel closes: a classic DLQ keeps the order and counts nothing.
        """
        letters: list[DeadLetter] = []
        for stage in self._stages_to_scan(where.stage):
            found, _ = await self._scan(stage, remove=frozenset())
            letters.extend(letter for letter in found if where.matches(letter))
        letters.sort(key=lambda letter: letter.last_failed_at)
        return letters if where.limit is None else letters[: where.limit]

    async def remove_dead_letters(self, ids: Sequence[uuid.UUID]) -> int:
        """Delete the dead letters with ``ids`` from the known stages' DLQs (see
        :meth:`list_dead_letters`); the others go back untouched. Returns how many."""
        wanted = frozenset(ids)
        if not wanted:
            return 0
        removed = 0
        for stage in self._stages_to_scan(None):
            _, count = await self._scan(stage, remove=wanted)
            removed += count
        return removed

    def _stages_to_scan(self, stage: str | None) -> list[str]:
        return [stage] if stage is not None else sorted(self._known_stages)

    async def _scan(
        self, stage: str, *, remove: frozenset[uuid.UUID]
    ) -> tuple[list[DeadLetter], int]:
        """Fetch every message of ``stage``'s DLQ unacknowledged, ack those in ``remove``,
        and close the channel so the others return. Returns (kept letters, removed)."""
        connection = self._require_connection()
        if connection.transport is None:
            raise BusError("not connected to the broker")
        queue = self.topology.dead_letter_queue(stage)
        channel = await connection.transport.connection.channel(publisher_confirms=False)
        letters: list[DeadLetter] = []
        removed = 0
        try:
            try:
                declared = await channel.queue_declare(queue, passive=True)
            except ChannelNotFoundEntity:
                return [], 0
            for _ in range(declared.message_count or 0):
                got = await channel.basic_get(queue, no_ack=False)
                if not isinstance(got.delivery, spec.Basic.GetOk):
                    break
                properties = got.header.properties
                letter = decode_dead_letter(
                    got.body,
                    properties.headers,
                    stage=stage,
                    message_id=properties.message_id,
                    delivery_limit=self.topology.delivery_limit,
                )
                tag = got.delivery.delivery_tag
                if letter.id in remove and tag is not None:
                    await channel.basic_ack(tag)
                    removed += 1
                else:
                    letters.append(letter)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        return letters, removed

    async def _declare_dead_letter_queue(self, stage: str) -> None:
        connection = self._require_connection()
        if connection.transport is None:
            raise BusError("not connected to the broker")
        channel = await connection.transport.connection.channel(publisher_confirms=False)
        try:
            await channel.queue_declare(
                self.topology.dead_letter_queue(stage),
                durable=True,
                arguments=self.topology.dead_letter_arguments(),
            )
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        self._dlq_declared.add(stage)
        self._known_stages.add(stage)

    # -- consuming ---------------------------------------------------------------------

    async def _open_stage(self, subscription: _Subscription) -> None:
        """Make sure ``subscription`` has an open channel, its queue and (unless paused or
        stopped) a consumer."""
        async with subscription.lock:
            await self._open_stage_locked(subscription)

    async def _open_stage_locked(self, subscription: _Subscription) -> None:
        connection = self._require_connection()
        if not subscription.ephemeral:
            await self.declare(subscription.name, subscription.event_types)
        if subscription.channel is None or subscription.channel.is_closed:
            await self._close_stage_channel(subscription)
            channel = await connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=subscription.concurrency)
            subscription.channel = channel
            subscription.queue = await self._declare_stage_queue(subscription, channel)
        elif subscription.ephemeral and subscription.consumer_tag is None:
            # An auto-delete queue disappears with its last consumer (pause): redeclare it.
            assert subscription.queue is not None
            await subscription.queue.declare()
            for event_type in subscription.event_types:
                await subscription.queue.bind(self.topology.exchange, event_type)
        if subscription.paused or not self._started or subscription.consumer_tag is not None:
            return
        assert subscription.queue is not None
        subscription.consumer_tag = await subscription.queue.consume(
            self._on_message(subscription),
            consumer_tag=f"ragbus.{subscription.name}.{uuid.uuid4().hex[:12]}",
        )
        subscription.misses = 0
        logger.debug("stage %s: consuming %s", subscription.name, subscription.queue_name)

    async def _declare_stage_queue(
        self, subscription: _Subscription, channel: AbstractRobustChannel
    ) -> AbstractRobustQueue:
        """Declare the stage's queue on its (robust) channel, so that aio-pika redeclares
        it, rebinds it and restores its consumer after a reconnect."""
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

    async def _cancel_consumer(self, subscription: _Subscription) -> None:
        """Cancel the stage's consumer. When that cannot be done (no connection, or the
        broker does not answer), close the stage's channel instead, so that aio-pika does
        not restore the consumer after a reconnect."""
        async with subscription.lock:
            tag, subscription.consumer_tag = subscription.consumer_tag, None
            if tag is None or subscription.queue is None:
                return
            if self._connected():
                try:
                    await asyncio.wait_for(subscription.queue.cancel(tag), _RPC_TIMEOUT)
                    return
                except Exception as exc:
                    logger.warning(
                        "stage %s: cancelling the consumer failed (%r); closing its channel",
                        subscription.name,
                        exc,
                    )
            await self._close_stage_channel(subscription)

    async def _close_stage_channel(self, subscription: _Subscription) -> None:
        """Close the stage's channel: its unacknowledged messages go back to the queue."""
        channel, subscription.channel = subscription.channel, None
        subscription.queue = None
        subscription.consumer_tag = None
        if channel is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), _RPC_TIMEOUT)

    def _on_message(
        self, subscription: _Subscription
    ) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        """The consumer callback: run the handler in its own task, so a closing channel
        does not cancel it and up to ``concurrency`` (the prefetch) run at once."""

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.create_task(self._deliver(subscription, message))
            subscription.in_flight.add(task)
            task.add_done_callback(subscription.in_flight.discard)

        return on_message

    async def _deliver(self, subscription: _Subscription, message: AbstractIncomingMessage) -> None:
        headers = message.headers
        count = headers.get("x-delivery-count") if headers else None
        inbound = InboundMessage(
            body=message.body,
            stage=subscription.name,
            redelivered=bool(message.redelivered),
            delivery_count=1 + count if isinstance(count, int) else 1,
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
            await self._settle(subscription, message.reject(requeue=requeue), "reject")
        else:
            await self._settle(subscription, message.ack(), "ack")

    async def _requeue(self, subscription: _Subscription, message: AbstractIncomingMessage) -> None:
        """Put ``message`` back without counting a delivery: republish it to the stage's
        queue (confirmed), then ack it. Ephemeral queues count nothing: nack-requeue."""
        if subscription.ephemeral:
            await self._settle(subscription, message.nack(requeue=True), "nack")
            return
        headers = {
            key: value
            for key, value in (message.headers or {}).items()
            if key not in _BROKER_DELIVERY_HEADERS
        }
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=DeliveryMode.PERSISTENT,
            priority=message.priority,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            message_id=message.message_id,
            timestamp=message.timestamp,
            type=message.type,
            app_id=message.app_id,
        )
        try:
            await self._send(self._require_default(), subscription.queue_name, copy)
        except (BusError, RuntimeError) as exc:
            logger.warning(
                "stage %s: requeue by republish failed (%r); requeueing by nack",
                subscription.name,
                exc,
            )
            await self._settle(subscription, message.nack(requeue=True), "nack")
            return
        await self._settle(subscription, message.ack(), "ack")

    async def _settle(
        self, subscription: _Subscription, settling: Awaitable[None], what: str
    ) -> None:
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

    # -- watchdog ----------------------------------------------------------------------

    async def _watch(self) -> None:
        """Every ``watchdog_interval`` seconds, re-establish stages without a live consumer."""
        while True:
            await asyncio.sleep(self.watchdog_interval)
            try:
                await self._check_consumers()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("ragbus watchdog: check failed")

    async def _check_consumers(self) -> None:
        if not self._started:
            return
        if not self._connected():
            # aio-pika is reconnecting; it restores channels and consumers itself.
            for subscription in self._subscriptions.values():
                subscription.misses = 0
            return
        for subscription in list(self._subscriptions.values()):
            if subscription.paused or self._consumer_alive(subscription):
                subscription.misses = 0
                continue
            subscription.misses += 1
            if subscription.misses < _MISSES_BEFORE_REBUILD:
                continue
            logger.warning("stage %s has no live consumer; re-establishing it", subscription.name)
            async with subscription.lock:
                if subscription.paused or not self._started:
                    continue
                if self._consumer_alive(subscription):
                    subscription.misses = 0
                    continue
                await self._close_stage_channel(subscription)
                await self._open_stage_locked(subscription)

    def _connected(self) -> bool:
        connection = self._connection
        return (
            connection is not None
            and not connection.is_closed
            and connection.transport is not None
            and not connection.transport.connection.is_closed
        )

    def _consumer_alive(self, subscription: _Subscription) -> bool:
        """Whether the stage's consumer is registered on its open channel."""
        channel, tag = subscription.channel, subscription.consumer_tag
        if channel is None or tag is None or channel.is_closed:
            return False
        underlay = _underlay_channel(channel)
        return underlay is not None and not underlay.is_closed and tag in underlay.consumers

    # -- helpers -----------------------------------------------------------------------

    def _spawn(self, coroutine: Awaitable[None], *, name: str) -> asyncio.Task[None]:
        async def run() -> None:
            try:
                await coroutine
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("ragbus: background task %s failed", name)

        task = asyncio.create_task(run(), name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _require_connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise BusError("the bus is not connected: call connect() first")
        return self._connection

    def _require_exchange(self) -> AbstractExchange:
        if self._exchange is None:
            raise BusError("the bus is not connected: call connect() first")
        return self._exchange

    def _require_default(self) -> AbstractExchange:
        if self._default_exchange is None:
            raise BusError("the bus is not connected: call connect() first")
        return self._default_exchange


def _underlay_channel(channel: AbstractRobustChannel) -> Any:
    """The aiormq channel under an aio-pika channel, or None (aio-pika keeps it in the
    private ``_channel``; there is no synchronous public accessor)."""
    underlay = getattr(channel, "_channel", None)
    return getattr(underlay, "channel", None)


__all__ = ["RabbitMQBus"]
