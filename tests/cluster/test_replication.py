"""Every queue of a stage is replicated on three nodes, and what is in the queues
survives the node that leads them."""

from __future__ import annotations

import pytest

from ragbus.bus.base import DeadLetter, DeadLetterFilter, DeadLetterReason, InboundMessage
from ragbus.events import new_event
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.pipelines.rag import pipeline as rag
from tests.amqp import Namespace
from tests.cluster.nodes import Cluster, wait_for_leaders
from tests.polling import wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


async def test_every_queue_has_a_replica_on_each_node(
    rabbitmq_cluster: Cluster, cluster_namespace: Namespace
) -> None:
    bus = await cluster_namespace.bus(url=rabbitmq_cluster.urls())
    await bus.declare("retrieve", [RagEvent.QUERY_RECEIVED])
    sink = rag.sinks["answers"]
    await bus.declare_sink("answers", sink.event_types)
    names = [*bus.topology.stage_queues("retrieve"), bus.topology.sink_queue("answers")]
    members = await rabbitmq_cluster.queue_members(names)
    every_node = sorted(node.name for node in rabbitmq_cluster.nodes)
    assert members == {name: every_node for name in names}


async def test_dead_letters_and_events_survive_the_node_leading_their_queues(
    rabbitmq_cluster: Cluster, cluster_namespace: Namespace
) -> None:
    first = rabbitmq_cluster.nodes[0]
    # Declared through the first node, whose queues lead there (client-local placement).
    leader = await cluster_namespace.bus(url=first.url)
    await leader.declare("retrieve", [RagEvent.QUERY_RECEIVED])
    store = leader.dead_letters(["retrieve"])
    letters = [
        DeadLetter.from_body(
            new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=f"q {n}")).encode(),
            stage="retrieve",
            reason=DeadLetterReason.FAILED,
            error="boom",
        )
        for n in range(5)
    ]
    for letter in letters:
        await store.add(letter)
    waiting = [
        new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=f"w {n}")) for n in range(5)
    ]
    for event in waiting:
        await leader.publish(event)
    names = leader.topology.stage_queues("retrieve")
    assert set((await rabbitmq_cluster.queue_leaders(names)).values()) == {first.name}
    await leader.close()

    await rabbitmq_cluster.stop_app(first)
    try:
        moved = await wait_for_leaders(rabbitmq_cluster, names, off=first)
        assert first.name not in moved.values()
        other = await cluster_namespace.bus(url=rabbitmq_cluster.urls(1))
        listed = await other.dead_letters(["retrieve"]).select(DeadLetterFilter())
        assert listed == letters  # every letter, every field, on the nodes that are left
        seen: list[str] = []

        async def take(message: InboundMessage) -> None:
            seen.append(str(rag.events.decode(message.body).id))

        other.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], take, concurrency=5)
        await other.start()
        await wait_until(lambda: len(seen) == len(waiting), what="the events that waited")
        assert sorted(seen) == sorted(str(event.id) for event in waiting)
    finally:
        await rabbitmq_cluster.start_app(first)
