"""The failure test: the node leading every queue dies under load, and comes back.

Workers (processes) and a producer are connected to different nodes of a three-node
cluster; every queue of the pipeline is led by the first node. 2,000 questions flow at a
steady rate. A third of the way in, the first node's RabbitMQ stops (``rabbitmqctl
stop_app``): the clients on it fail over, the queues elect leaders on the other nodes.
Two thirds of the way in it starts again. Every question must be answered exactly once
(one answer id per question), nothing may be dead-lettered, and the time from the
node's stop to answers flowing again is measured and reported.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from ragbus.bus.base import DeadLetterFilter, InboundMessage
from ragbus.bus.errors import PublishNotConfirmedError
from ragbus.bus.rabbitmq import RabbitMQBus
from ragbus.events import Envelope, new_event
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.pipelines.rag import pipeline as rag
from tests.amqp import Namespace
from tests.cluster.conftest import MEASURED
from tests.cluster.nodes import Cluster, Node, wait_for_leaders
from tests.conftest import WorkersFactory
from tests.polling import wait_until
from tests.process.workers import AnswerLog, WorkerProcess

pytestmark = [pytest.mark.rabbitmq, pytest.mark.redis, pytest.mark.slow]

#: Questions sent.
QUESTIONS = 2000

#: Questions sent per second: steady, so that questions are sent before, during and
#: after the outage.
RATE_PER_S = 40.0

#: The stage that collects the answers (a durable queue, led by the node that dies too).
COLLECTOR = "collector"

#: How many times the producer may have to send one question again (a publish in
#: flight when the cluster changes is not confirmed; the stages drop the duplicate).
MAX_SENDS = 20


@dataclass
class Timeline:
    """When each question was sent and each answer arrived (the event loop's clock)."""

    sent_at: dict[uuid.UUID, float] = field(default_factory=dict)
    arrivals: list[tuple[float, uuid.UUID]] = field(default_factory=list)
    resent: int = 0

    def first_answer_sent_after(self, moment: float) -> float | None:
        """When the first answer arrived to a question sent after ``moment``."""
        return next(
            (at for at, query in self.arrivals if self.sent_at.get(query, 0.0) > moment), None
        )

    def longest_gap_after(self, moment: float) -> float:
        """The longest time without any answer, from ``moment`` on."""
        times = [moment, *(at for at, _ in self.arrivals if at > moment)]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def latencies(self, sent_from: float, sent_until: float) -> list[float]:
        """Seconds from sending to the first answer, of the questions sent in the span."""
        first: dict[uuid.UUID, float] = {}
        for at, query in self.arrivals:
            first.setdefault(query, at)
        return sorted(
            first[query] - sent
            for query, sent in self.sent_at.items()
            if sent_from <= sent < sent_until and query in first
        )


def collector(log: AnswerLog, timeline: Timeline) -> Callable[[InboundMessage], object]:
    async def collect(message: InboundMessage) -> None:
        await log(message)
        event = json.loads(message.body)
        if event.get("type") == RagEvent.ANSWER_GENERATED:
            loop = asyncio.get_running_loop()
            timeline.arrivals.append((loop.time(), uuid.UUID(event["correlation_id"])))

    return collect


async def handled(process: WorkerProcess) -> float:
    """Events the worker has handled so far (its /metrics)."""
    return (await process.metrics()).value("ragbus_processed_total")


async def send(producer: RabbitMQBus, event: Envelope, timeline: Timeline) -> None:
    """Publish ``event`` until the broker confirms it (the same event each time)."""
    for _ in range(MAX_SENDS):
        try:
            await producer.publish(event)
            return
        except PublishNotConfirmedError:
            timeline.resent += 1
    raise AssertionError(f"question {event.id} was never confirmed in {MAX_SENDS} sends")


async def declare_everything_on(node: Node, namespace: Namespace) -> list[str]:
    """Declare the pipeline's queues, the sink and the collector through ``node`` only,
    so that ``node`` leads them all; their names."""
    bus = namespace.make(url=node.url)
    await bus.connect()
    try:
        for spec in rag.stages.values():
            await bus.declare(spec.name, spec.consumes)
        await bus.declare(COLLECTOR, [RagEvent.ANSWER_GENERATED])
        for sink in rag.sinks.values():
            await bus.declare_sink(
                sink.name, sink.event_types, max_length=sink.max_length, ttl_s=sink.ttl_s
            )
        topology = bus.topology
        names = [topology.sink_queue(sink) for sink in rag.sinks]
        for stage in (*rag.stage_names, COLLECTOR):
            names.extend(topology.stage_queues(stage))
        return names
    finally:
        await bus.close()


async def test_the_node_leading_every_queue_dies_under_load_and_every_question_is_answered_once(
    rabbitmq_cluster: Cluster,
    cluster_namespace: Namespace,
    make_workers: WorkersFactory,
    redis_url: str,
    cache_namespace: str,
) -> None:
    cluster = rabbitmq_cluster
    doomed = cluster.nodes[0]
    namespace = cluster_namespace
    namespace.stages.add(COLLECTOR)
    loop = asyncio.get_running_loop()

    names = await declare_everything_on(doomed, namespace)
    leaders = await cluster.queue_leaders(names)
    assert set(leaders.values()) == {doomed.name}, leaders

    # Two workers per stage: one on the node that will die, one elsewhere.
    workers = make_workers(namespace=namespace)
    plan = [("retrieve", 0), ("retrieve", 1), ("generate", 2), ("generate", 0)]
    processes: list[WorkerProcess] = [
        workers.spawn(
            stage,
            name=f"{stage}-{cluster.nodes[first].name.split('@')[0]}",
            amqp_url=cluster.urls(first),
            cache_url=redis_url,
            cache_namespace=cache_namespace,
        )
        for stage, first in plan
    ]
    await asyncio.gather(*(process.wait_ready(90) for process in processes))
    on_doomed = [p for (_, first), p in zip(plan, processes, strict=True) if first == 0]

    log = AnswerLog()
    timeline = Timeline()
    answers = await namespace.bus(url=cluster.urls(2))
    answers.subscribe(
        COLLECTOR, [RagEvent.ANSWER_GENERATED], collector(log, timeline), concurrency=64
    )
    await answers.start()
    producer = await namespace.bus(url=cluster.urls(1))

    questions = [
        new_event(
            RagEvent.QUERY_RECEIVED,
            QueryReceived(question=f"How does ragbus handle failure number {n}?"),
        )
        for n in range(QUESTIONS)
    ]
    queries = [question.correlation_id for question in questions]

    async def produce() -> None:
        started = loop.time()
        for n, question in enumerate(questions):
            timeline.sent_at[question.correlation_id] = loop.time()
            await send(producer, question, timeline)
            pause = started + (n + 1) / RATE_PER_S - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)  # the producer's pace, not a wait for a condition

    producing = asyncio.create_task(produce())
    report = workers.report
    try:
        await wait_until(
            lambda: len(log.answered(queries)) >= QUESTIONS // 3,
            what="a third of the answers",
            timeout=180,
            report=report,
        )
        handled_before = [await handled(process) for process in on_doomed]
        stopped_at = loop.time()
        await cluster.stop_app(doomed)
        down_at = loop.time()  # its connections are closed, its replicas stopped
        moved = await wait_for_leaders(cluster, names, off=doomed)
        await wait_until(
            lambda: timeline.first_answer_sent_after(down_at) is not None,
            what="an answer to a question sent after the node stopped",
            timeout=120,
            report=report,
        )
        first_answer = timeline.first_answer_sent_after(down_at)
        assert first_answer is not None
        recovery_s = first_answer - down_at
        await wait_until(
            lambda: len(timeline.sent_at) >= 2 * QUESTIONS // 3,
            what="two thirds of the questions sent",
            timeout=180,
            report=report,
        )
        await cluster.start_app(doomed)
        await asyncio.wait_for(producing, timeout=180)
        await log.wait_for(queries, timeout=300, report=report)
    finally:
        producing.cancel()
        await asyncio.gather(producing, return_exceptions=True)
        await cluster.start_app(doomed)  # whatever happened, the next test has 3 nodes

    distinct = {query: log.distinct_answer_ids(query) for query in queries}
    answered = sum(1 for ids in distinct.values() if ids)
    more_than_one = [query for query, ids in distinct.items() if len(ids) > 1]
    deliveries = log.deliveries
    store = (await namespace.bus(url=cluster.urls(1))).dead_letters(rag.stage_names)
    dead = await store.select(DeadLetterFilter())
    before = timeline.latencies(0.0, stopped_at - 1)
    around = timeline.latencies(stopped_at - 5, down_at + 5)
    reconnects = [
        line.split("reconnected to the RabbitMQ broker at ", 1)[1]
        for process in on_doomed
        for line in process.log.splitlines()
        if "reconnected to the RabbitMQ broker at " in line
    ]
    MEASURED.append(
        f"node failure under load: {doomed.name}, leader of {len(names)} queues, stopped "
        f"after {QUESTIONS // 3} answers (stop_app took {down_at - stopped_at:.1f}s; leaders "
        f"moved to {', '.join(sorted(set(moved.values())))}); the first answer to a question "
        f"sent after the stop came {recovery_s:.2f}s after it; longest time without any "
        f"answer from the stop on {timeline.longest_gap_after(stopped_at):.2f}s; latency "
        f"before the stop median {before[len(before) // 2]:.2f}s, of the questions sent "
        f"within 5s of the stop median {around[len(around) // 2]:.2f}s and worst "
        f"{around[-1]:.2f}s; the workers on the stopped node reconnected to: "
        + "; ".join(reconnects)
    )
    MEASURED.append(
        f"node failure under load: {QUESTIONS} questions, {answered} answered, "
        f"{len(more_than_one)} with more than one answer id, {deliveries - answered} "
        f"duplicate deliveries of an answer, {len(dead)} dead-lettered, {timeline.resent} "
        "questions sent again (publish not confirmed)"
    )

    assert answered == QUESTIONS
    assert more_than_one == []  # exactly once: one answer id per question
    assert dead == []
    assert all(process.alive for process in processes), report()
    for process, earlier in zip(on_doomed, handled_before, strict=True):
        # they lost their node, found another, and worked on
        assert "reconnected to the RabbitMQ broker at amqp://guest:***@" in process.log
        assert await handled(process) > earlier, process.describe()
    assert all("guest:guest@" not in process.log for process in processes)
