"""The RabbitMQ bus: stages as durable quorum queues shared by many workers, on one
broker or on a cluster of nodes.

It composes one module per role (``docs/rabbitmq.md`` describes the whole):

- :mod:`~ragbus.bus.rabbitmq.connection`: connecting (with retries) to one node of a
  cluster, failing over to another when it is lost, channels;
- :mod:`~ragbus.bus.rabbitmq.topology`: names and arguments of the exchange and
  queues, and the one place that declares them;
- :mod:`~ragbus.bus.rabbitmq.publisher`: the one message builder; confirmed,
  ``mandatory`` publishes and what the broker's answers mean;
- :mod:`~ragbus.bus.rabbitmq.consumer`: subscriptions, deliveries and how each is
  settled;
- :mod:`~ragbus.bus.rabbitmq.dead_letters`: the per-stage DLQs;
- :mod:`~ragbus.bus.rabbitmq.watchdog`: re-establishes consumers that vanished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ragbus.bus.backpressure import DEFAULT_QUEUE_FULL_WAIT_S, DEFAULT_QUEUE_MAX_LENGTH
from ragbus.bus.base import Bus, MessageHandler, QueueStats
from ragbus.bus.errors import BusError
from ragbus.bus.rabbitmq.connection import BrokerConnection
from ragbus.bus.rabbitmq.consumer import Consumers, Subscription
from ragbus.bus.rabbitmq.dead_letters import RabbitMQDeadLetters
from ragbus.bus.rabbitmq.publisher import Publisher
from ragbus.bus.rabbitmq.topology import (
    DEFAULT_DELAY_TIERS,
    DEFAULT_DELIVERY_LIMIT,
    DEFAULT_QUORUM_GROUP_SIZE,
    Declarer,
    Topology,
)
from ragbus.bus.rabbitmq.watchdog import Watchdog
from ragbus.events import Envelope
from ragbus.observability.tracing import publishing

if TYPE_CHECKING:
    from ragbus.config import Settings

logger = logging.getLogger(__name__)

#: Seconds :meth:`RabbitMQBus.connect` keeps trying by default.
DEFAULT_CONNECT_TIMEOUT_S = 60.0


class RabbitMQBus(Bus):
    """A bus on a RabbitMQ broker.

    Parameters:
        url: the AMQP URL, e.g. ``amqp://guest:guest@127.0.0.1:5672/``, or the URLs of a
            cluster's nodes separated by commas: the bus connects to the first node that
            accepts and moves to another when it loses it.
        exchange: the durable topic exchange events are published to
            (default ``"ragbus.events"``).
        queue_prefix: prefix of every queue name (default ``"ragbus"``).
        dlq_path: ignored (dead letters live in RabbitMQ); accepted so factories can
            build either bus with the same arguments (default None).
        delivery_limit: ``x-delivery-limit`` of the stage queues: a message whose
            handler keeps raising is dead-lettered by the broker after
            ``delivery_limit + 1`` deliveries (default 20).
        delay_tiers: delays of the retry queues in seconds; a delayed publish uses the
            smallest tier at least as long as the delay, else the longest (default
            ``ragbus.runtime.redelivery.DELAY_TIERS``).
        reconnect_interval: seconds between reconnection attempts (default 1.0).
        watchdog_interval: seconds between checks that every stage has a live consumer
            (default 2.0).
        connect_timeout: how long :meth:`connect` keeps trying to reach the broker, in
            seconds, with backoff and one log line per attempt; 0 tries each node once
            (default 60).
        quorum_group_size: how many nodes hold a copy of each queue
            (``x-quorum-initial-group-size``; default 3, the broker uses every node when
            the cluster has fewer). Every process of a deployment must use the same.
        queue_max_length: ``x-max-length`` of each stage queue (default 1000): a full
            one refuses publishes (``reject-publish``). Every process of a deployment
            must use the same; changing it on existing queues needs a new
            ``queue_prefix`` (the broker refuses to redeclare a queue with other
            arguments).
        queue_full_wait_s: how long a publish refused by a full queue backs off and
            tries again, in seconds, at most until the event's deadline; then
            :class:`~ragbus.errors.QueueFullError` (default 5).
    """

    kind = "rabbitmq"

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
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        quorum_group_size: int = DEFAULT_QUORUM_GROUP_SIZE,
        queue_max_length: int = DEFAULT_QUEUE_MAX_LENGTH,
        queue_full_wait_s: float = DEFAULT_QUEUE_FULL_WAIT_S,
    ) -> None:
        del dlq_path  # dead letters live in the broker
        if delivery_limit < 1:
            raise ValueError("delivery_limit must be at least 1")
        if not delay_tiers or min(delay_tiers) <= 0:
            raise ValueError("delay_tiers must hold at least one positive delay")
        if quorum_group_size < 1:
            raise ValueError("quorum_group_size must be at least 1")
        if queue_max_length < 1:
            raise ValueError("queue_max_length must be at least 1")
        self.topology = Topology(
            exchange=exchange,
            prefix=queue_prefix,
            delivery_limit=delivery_limit,
            delay_tiers=tuple(sorted(set(delay_tiers))),
            quorum_group_size=quorum_group_size,
            max_length=queue_max_length,
        )
        self.connection = BrokerConnection(
            url,
            name=f"ragbus:{queue_prefix}",
            reconnect_interval=reconnect_interval,
            connect_timeout=connect_timeout,
        )
        self.declarer = Declarer(self.connection, self.topology)
        self.publisher = Publisher(
            self.connection, self.topology, queue_full_wait_s=queue_full_wait_s
        )
        self.consumers = Consumers(self.connection, self.topology, self.declarer, self.publisher)
        self.watchdog = Watchdog(self.connection, self.consumers, watchdog_interval)
        self._opening: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The AMQP URL (a secret: messages show it through ``mask_url``)."""
        return ",".join(self.connection.nodes)

    @classmethod
    def from_settings(cls, settings: Settings) -> RabbitMQBus:
        """A bus configured from ``settings``: ``amqp_url``, ``exchange``, ``queue_prefix``,
        ``delivery_limit``, ``redelivery_delays_s`` as the retry queues' delay tiers,
        ``connect_timeout_s``, ``quorum_initial_group_size``, ``queue_max_length`` and
        ``queue_full_wait_s``."""
        return cls(
            settings.amqp_url.get_secret_value(),
            exchange=settings.exchange,
            queue_prefix=settings.queue_prefix,
            delivery_limit=settings.delivery_limit,
            delay_tiers=tuple(settings.redelivery_delays_s),
            connect_timeout=settings.connect_timeout_s,
            quorum_group_size=settings.quorum_initial_group_size,
            queue_max_length=settings.queue_max_length,
            queue_full_wait_s=settings.queue_full_wait_s,
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect (see :class:`~ragbus.bus.rabbitmq.connection.BrokerConnection`: with
        retries, to one node of the list, failing over to another when it is lost), open
        the publisher channel and declare the exchange.

        Raises:
            BrokerUnavailableError: the broker was not reached within ``connect_timeout``.
            BrokerRefusedError: the broker refused the login.
        """
        if self.connection.is_open:
            return
        await self.connection.open()
        try:
            await self.publisher.open()
        except BaseException:
            await self.connection.close()
            raise

    async def close(self) -> None:
        """Stop consuming at once (unfinished deliveries go back to the broker) and close
        the connection."""
        await self.stop(grace=0)
        for task in list(self._opening):
            task.cancel()
        await asyncio.gather(*self._opening, return_exceptions=True)
        self.publisher.forget()
        await self.connection.close()

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
        subscription = self.consumers.add(
            stage, event_types, handler, concurrency=concurrency, ephemeral=ephemeral
        )
        if self.consumers.started:
            self._open_in_background(subscription)

    def subscription(self, stage: str) -> Subscription:
        """The consuming state of ``stage`` (``KeyError`` if it is not subscribed)."""
        return self.consumers.subscriptions[stage]

    async def declare(self, stage: str, event_types: Sequence[str]) -> None:
        """Declare ``stage``'s queues (stage queue and its bindings, DLQ, retry queues)
        without consuming. Idempotent; raises :class:`BusError` if a queue exists with
        other arguments."""
        await self.declarer.stage(stage, event_types)

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
        await self.declarer.sink(name, event_types, max_length=max_length, ttl_s=ttl_s)

    async def start(self) -> None:
        """Declare and consume every subscribed stage (except paused ones), and start the
        watchdog."""
        if not self.connection.is_open:
            raise BusError("the bus is not connected: call connect() first")
        self.consumers.started = True
        for subscription in list(self.consumers.subscriptions.values()):
            await self.consumers.open(subscription)
        self.watchdog.start()

    async def stop(self, grace: float = 30.0) -> None:
        """Cancel every consumer, wait up to ``grace`` seconds (default 30) for in-flight
        handlers, cancel the rest and close the stage channels: the broker redelivers what
        was not acknowledged."""
        await self.watchdog.stop()
        await self.consumers.stop(grace)

    async def pause(self, stage: str) -> None:
        """Stop taking new deliveries for ``stage`` (its consumer is cancelled); in-flight
        handlers finish and settle as usual."""
        subscription = self.consumers.subscriptions[stage]
        subscription.paused = True
        await self.consumers.cancel(subscription)

    async def resume(self, stage: str) -> None:
        """Consume ``stage`` again (if the bus is started)."""
        subscription = self.consumers.subscriptions[stage]
        subscription.paused = False
        if not self.consumers.started:
            return
        try:
            await self.consumers.open(subscription)
        except Exception as exc:  # e.g. the broker is down: the watchdog retries
            logger.warning(
                "stage %s: resuming failed (%r); the watchdog will retry", subscription.name, exc
            )

    @property
    def healthy(self) -> bool:
        """Connected, and every started, non-paused stage has a live consumer."""
        return self.connection.is_connected and self.consumers.healthy

    # -- publishing and dead letters -------------------------------------------------------

    async def publish(
        self,
        envelope: Envelope,
        *,
        stage: str | None = None,
        delay: float | None = None,
        transient: bool = False,
    ) -> None:
        """Publish ``envelope``; see :meth:`Bus.publish` and
        :meth:`~ragbus.bus.rabbitmq.publisher.Publisher.publish`.

        Parameters:
            envelope: the event.
            stage: only this stage's queue (default: every stage consuming the type).
            delay: through the stage's retry queue whose tier suits it (default: now).
            transient: non-persistent, not ``mandatory``, never raises (default False).
        """
        with publishing(envelope, "rabbitmq", transient=transient) as sent:
            await self.publisher.publish(sent, stage=stage, delay=delay, transient=transient)

    async def queue_stats(self, stage: str) -> QueueStats | None:
        """Ready messages and consumers of ``<prefix>.<stage>``, from a passive
        declaration (None when the queue does not exist)."""
        return await self.declarer.queue_stats(self.topology.stage_queue(stage))

    def dead_letters(self, stages: Sequence[str]) -> RabbitMQDeadLetters:
        """The DLQs of ``stages`` on this broker; see :class:`RabbitMQDeadLetters`."""
        return RabbitMQDeadLetters(
            self.connection, self.topology, self.declarer, self.publisher, stages
        )

    # -- helpers -----------------------------------------------------------------------

    def _open_in_background(self, subscription: Subscription) -> None:
        async def run() -> None:
            try:
                await self.consumers.open(subscription)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("ragbus: opening stage %s failed", subscription.name)

        task = asyncio.create_task(run(), name=f"ragbus:open:{subscription.name}")
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)


__all__ = ["DEFAULT_CONNECT_TIMEOUT_S", "RabbitMQBus"]
