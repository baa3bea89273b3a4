"""The RabbitMQ topology of ragbus: names and arguments of its exchange and queues.

Other services rely on it (see ``docs/rabbitmq.md``), so it lives in one place:

- one durable topic exchange, ``<exchange>``; the routing key is the event type;
- per stage, a durable quorum queue ``<prefix>.<stage>`` bound to the event types the
  stage consumes, bounded (``x-max-length``; a publish to a full one is refused,
  ``x-overflow: reject-publish``), with ``x-delivery-limit`` and dead-lettering, at
  least once, to the stage's DLQ;
- per stage, a durable quorum dead-letter queue ``<prefix>.<stage>.dlq`` (unbounded);
- per stage and delay tier, a durable quorum retry queue
  ``<prefix>.<stage>.retry.<milliseconds>`` whose messages expire after the tier's
  delay and are dead-lettered (at least once) to ``<prefix>.<stage>`` only;
- per sink (a pipeline's results, e.g. ``answers``), a durable quorum queue
  ``<prefix>.<sink>`` bounded in length and age, so final events are always routable.

Every durable queue is a quorum queue, replicated on ``x-quorum-initial-group-size``
nodes of the cluster (:attr:`Topology.quorum_group_size`; the broker uses every node
when the cluster has fewer), so each survives the loss of a minority of its nodes.

:class:`Declarer` is the one place that declares them (on a short-lived channel); the
consumer declares a stage queue again on its own channel with the same arguments.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel
from aiormq.exceptions import ChannelNotFoundEntity, ChannelPreconditionFailed

from ragbus.bus.backpressure import DEFAULT_QUEUE_MAX_LENGTH
from ragbus.bus.base import QueueStats
from ragbus.bus.errors import BusError
from ragbus.bus.rabbitmq.connection import BrokerConnection
from ragbus.config.settings import QUORUM_GROUP_SIZE
from ragbus.runtime.redelivery import DELAY_TIERS, DELIVERY_LIMIT

#: The delays of the per-stage retry queues, in seconds (the redelivery tiers).
DEFAULT_DELAY_TIERS: Final = DELAY_TIERS

#: Deliveries a stage queue allows before the broker dead-letters a message whose
#: handler keeps failing (the quorum queue's ``x-delivery-limit``).
DEFAULT_DELIVERY_LIMIT: Final = DELIVERY_LIMIT

#: Nodes each queue is replicated on (``x-quorum-initial-group-size``).
DEFAULT_QUORUM_GROUP_SIZE: Final = QUORUM_GROUP_SIZE

#: ``x-delivery-limit`` of a dead-letter queue. Listing a DLQ takes every message and
#: returns it, and a quorum queue counts each return as a delivery (RabbitMQ 3.x, and
#: 4.x before 4.3); RabbitMQ 4 gives a quorum queue without a limit a limit of 20 and
#: then drops the message. This limit is too high to reach by listing; -1 is not an
#: option: RabbitMQ 3.10 takes it as "dead-letter at the first return" (measured).
DEAD_LETTER_DELIVERY_LIMIT: Final = 2**31 - 1


def tier_for(delay: float, tiers: Sequence[float]) -> float:
    """The smallest tier of ``tiers`` that is at least ``delay``, else the largest.

    Parameters:
        delay: the wanted delay in seconds.
        tiers: the available delays in seconds (not empty).
    """
    if not tiers:
        raise ValueError("there must be at least one delay tier")
    fitting = [tier for tier in tiers if tier >= delay]
    return min(fitting) if fitting else max(tiers)


@dataclass(frozen=True, slots=True)
class Topology:
    """Names and arguments of ragbus's exchange and queues.

    Parameters:
        exchange: the topic exchange every event is published to.
        prefix: the prefix of every queue name.
        delivery_limit: ``x-delivery-limit`` of each stage queue.
        delay_tiers: the delays of the retry queues, in seconds.
        quorum_group_size: ``x-quorum-initial-group-size`` of every durable queue: how
            many nodes hold a copy (default 3; the broker uses every node when the
            cluster has fewer). The broker checks it at every declaration like the other
            arguments, so every process of a deployment must use the same value.
        max_length: ``x-max-length`` of each stage queue: events waiting at most; a
            publish beyond it is refused (default 1000). Checked like the others.
    """

    exchange: str
    prefix: str
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    delay_tiers: tuple[float, ...] = DEFAULT_DELAY_TIERS
    quorum_group_size: int = DEFAULT_QUORUM_GROUP_SIZE
    max_length: int = DEFAULT_QUEUE_MAX_LENGTH

    def stage_queue(self, stage: str) -> str:
        """``<prefix>.<stage>``: where the stage's events wait."""
        return f"{self.prefix}.{stage}"

    def dead_letter_queue(self, stage: str) -> str:
        """``<prefix>.<stage>.dlq``: the stage's dead letters."""
        return f"{self.prefix}.{stage}.dlq"

    def retry_queue(self, stage: str, tier: float) -> str:
        """``<prefix>.<stage>.retry.<ms>``: the stage's delayed retries of one tier."""
        return f"{self.prefix}.{stage}.retry.{tier_milliseconds(tier)}"

    def stage_queues(self, stage: str) -> tuple[str, ...]:
        """Every queue of ``stage``: its stage queue, its DLQ and one retry queue per
        delay tier (what a stage leaves on the broker, e.g. to delete it)."""
        return (
            self.stage_queue(stage),
            self.dead_letter_queue(stage),
            *(self.retry_queue(stage, tier) for tier in self.delay_tiers),
        )

    def ephemeral_queue(self, stage: str, suffix: str) -> str:
        """``<prefix>.<stage>.<suffix>``: an exclusive queue living with its connection."""
        return f"{self.prefix}.{stage}.{suffix}"

    def replicated(self) -> dict[str, Any]:
        """The arguments that make a queue replicated: a quorum queue on
        :attr:`quorum_group_size` nodes."""
        return {"x-queue-type": "quorum", "x-quorum-initial-group-size": self.quorum_group_size}

    def stage_arguments(self, stage: str) -> dict[str, Any]:
        """Arguments of the stage queue: quorum, delivery limit, bounded to
        :attr:`max_length` with ``reject-publish`` (a publisher is refused instead of
        piling messages up: backpressure), and dead-lettering to the DLQ at least once
        (the broker keeps a message until the DLQ has confirmed it; quorum queues allow
        it only with ``reject-publish``, and the DLQ has no bound, so it always takes
        it)."""
        return {
            **self.replicated(),
            "x-delivery-limit": self.delivery_limit,
            "x-max-length": self.max_length,
            "x-overflow": "reject-publish",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dead_letter_queue(stage),
            "x-dead-letter-strategy": "at-least-once",
        }

    def dead_letter_arguments(self) -> dict[str, Any]:
        """Arguments of a DLQ: a quorum queue (dead letters survive a node's death) whose
        delivery limit listing can never reach (:data:`DEAD_LETTER_DELIVERY_LIMIT`)."""
        return {**self.replicated(), "x-delivery-limit": DEAD_LETTER_DELIVERY_LIMIT}

    def retry_arguments(self, stage: str, tier: float) -> dict[str, Any]:
        """Arguments of a retry queue: a quorum queue whose messages expire after
        ``tier`` seconds and go back to ``<prefix>.<stage>`` only, at least once (the
        broker keeps a message until the stage queue has confirmed it, which needs
        ``x-overflow: reject-publish``)."""
        return {
            **self.replicated(),
            "x-message-ttl": tier_milliseconds(tier),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.stage_queue(stage),
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    def sink_queue(self, name: str) -> str:
        """``<prefix>.<name>``: a sink keeping a pipeline's latest results."""
        return f"{self.prefix}.{name}"

    def sink_arguments(self, max_length: int, ttl_s: float) -> dict[str, Any]:
        """Arguments of a sink: a quorum queue holding at most ``max_length`` messages
        (the oldest dropped first) for at most ``ttl_s`` seconds each."""
        return {
            **self.replicated(),
            "x-max-length": max_length,
            "x-overflow": "drop-head",
            "x-message-ttl": tier_milliseconds(ttl_s),
        }

    def retry_queue_for(self, stage: str, delay: float) -> str:
        """The retry queue of ``stage`` whose tier suits ``delay`` (see :func:`tier_for`)."""
        return self.retry_queue(stage, tier_for(delay, self.delay_tiers))


def tier_milliseconds(tier: float) -> int:
    """A delay tier in whole milliseconds (at least 1)."""
    return max(1, round(tier * 1000))


class Declarer:
    """Declares the exchange and queues of a :class:`Topology`, each on a short-lived
    channel; idempotent. A queue or exchange that exists with other arguments becomes a
    :class:`~ragbus.bus.errors.BusError` (RabbitMQ's ``PRECONDITION_FAILED``), never a
    silent use of someone else's queue.

    Parameters:
        connection: the bus's connection.
        topology: the names and arguments.
    """

    def __init__(self, connection: BrokerConnection, topology: Topology) -> None:
        self.connection = connection
        self.topology = topology
        self._stages: set[str] = set()

    @property
    def declared_stages(self) -> frozenset[str]:
        """The stages whose queues this declarer declared (for tools that clean up
        after themselves). Dead letters are never looked for by it: a fresh process has
        declared nothing."""
        return frozenset(self._stages)

    @contextlib.asynccontextmanager
    async def _channel(self, what: str) -> AsyncIterator[AbstractChannel]:
        """A channel with the exchange declared, for declaring ``what``."""
        try:
            async with self.connection.channel() as channel:
                await channel.declare_exchange(
                    self.topology.exchange, ExchangeType.TOPIC, durable=True
                )
                yield channel
        except ChannelPreconditionFailed as exc:
            raise BusError(
                f"a queue or exchange of {what} exists with other arguments: {exc}"
            ) from exc

    async def exchange(self) -> None:
        """Declare the topic exchange."""
        async with self._channel("the bus"):
            pass

    async def stage(self, stage: str, event_types: Sequence[str]) -> None:
        """Declare ``stage``'s DLQ, retry queues and stage queue, bound to
        ``event_types``.

        Parameters:
            stage: the stage.
            event_types: the event types its queue is bound to (bindings are only ever
                added).
        """
        topology = self.topology
        async with self._channel(f"stage {stage!r}") as channel:
            await channel.declare_queue(
                topology.dead_letter_queue(stage),
                durable=True,
                arguments=topology.dead_letter_arguments(),
            )
            for tier in topology.delay_tiers:
                await channel.declare_queue(
                    topology.retry_queue(stage, tier),
                    durable=True,
                    arguments=topology.retry_arguments(stage, tier),
                )
            queue = await channel.declare_queue(
                topology.stage_queue(stage),
                durable=True,
                arguments=topology.stage_arguments(stage),
            )
            for event_type in event_types:
                await queue.bind(topology.exchange, routing_key=event_type)
        self._stages.add(stage)

    async def dead_letter_queue(self, stage: str) -> None:
        """Declare ``stage``'s DLQ only."""
        async with self._channel(f"stage {stage!r}") as channel:
            await channel.declare_queue(
                self.topology.dead_letter_queue(stage),
                durable=True,
                arguments=self.topology.dead_letter_arguments(),
            )
        self._stages.add(stage)

    async def sink(
        self, name: str, event_types: Sequence[str], *, max_length: int, ttl_s: float
    ) -> None:
        """Declare the sink ``name`` bound to ``event_types``.

        Parameters:
            name: the sink (queue ``<prefix>.<name>``).
            event_types: the event types it keeps.
            max_length, ttl_s: its bounds (see :meth:`Topology.sink_arguments`).
        """
        topology = self.topology
        async with self._channel(f"sink {name!r}") as channel:
            queue = await channel.declare_queue(
                topology.sink_queue(name),
                durable=True,
                arguments=topology.sink_arguments(max_length, ttl_s),
            )
            for event_type in event_types:
                await queue.bind(topology.exchange, routing_key=event_type)

    async def queue_stats(self, name: str) -> QueueStats | None:
        """Ready messages and consumers of the queue ``name``, from a passive declaration
        (which creates nothing); None when it does not exist."""
        async with self.connection.channel() as channel:
            try:
                queue = await channel.declare_queue(name, passive=True)
            except ChannelNotFoundEntity:
                return None
            result = queue.declaration_result
            return QueueStats(
                messages=result.message_count or 0, consumers=result.consumer_count or 0
            )
