"""Real ``ragbus worker`` processes on RabbitMQ: crashes, broker restarts, poison
messages, graceful stops, ops endpoints, and the CLI across processes.

Each test runs in its own namespace (exchange ``<ns>.events``, queue prefix ``<ns>``)
and counts what arrives: every query must get an answer, and every query's answers
must carry one event id (a redelivery may repeat an answer, with the same id).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ragbus.bus.base import DeadLetter, DeadLetterFilter, DeadLetterReason
from ragbus.bus.errors import BusError
from ragbus.bus.rabbitmq import RabbitMQBus
from ragbus.dlq import replay
from ragbus.events import Envelope, derived_event_id, new_event
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.pipelines.rag import STAGE_NAMES
from ragbus.pipelines.rag import pipeline as rag
from tests.amqp import Namespace
from tests.conftest import unavailable
from tests.foreign import publish_raw
from tests.lm_server import start_lm_server
from tests.polling import wait_until
from tests.process.workers import (
    POISON_READY,
    AnswerLog,
    Metrics,
    WorkerProcess,
    Workers,
    broker_is_local,
    broker_start_app,
    broker_stop_app,
    ensure_broker_running,
    queue_depths,
)

pytestmark = pytest.mark.rabbitmq

QUESTIONS = (
    "How does ragbus handle a failed event?",
    "What does a dead letter record?",
    "Which LM answers by default?",
    "How do workers share a stage?",
)


def queries(count: int, tag: str = "") -> list[Envelope]:
    """``count`` distinct questions (distinct, so no cache or coalescing shortcuts)."""
    return [
        new_event(
            RagEvent.QUERY_RECEIVED,
            QueryReceived(question=f"{QUESTIONS[n % len(QUESTIONS)]} ({tag}case {n})"),
        )
        for n in range(count)
    ]


def answer_id(query: Envelope) -> uuid.UUID:
    """The id every answer to ``query`` must have (derived ids are deterministic)."""
    retrieved = derived_event_id(query.id, RagEvent.DOCUMENTS_RETRIEVED)
    return derived_event_id(retrieved, RagEvent.ANSWER_GENERATED)


#: The counter of redelivered events dropped by their id.
DUPLICATES = "ragbus_duplicates_dropped_total"

STAGES = {"retrieve": [RagEvent.QUERY_RECEIVED], "generate": [RagEvent.DOCUMENTS_RETRIEVED]}


async def observer(
    namespace: Namespace,
    *,
    durable: bool = False,
    declare: tuple[str, ...] = ("retrieve", "generate"),
    **options: object,
) -> tuple[RabbitMQBus, AnswerLog]:
    """A connected test bus that declares the queues of the stages in ``declare`` and
    records every ``answer_generated`` event from now on (in an exclusive queue, or with
    ``durable`` in a stage queue of its own that survives a broker restart)."""
    bus = namespace.make(**options)
    await bus.connect()
    for stage in declare:
        await bus.declare(stage, STAGES[stage])
    for sink, types in ((s.name, s.event_types) for s in rag.sinks.values()):
        await bus.declare_sink(sink, types)
    log = AnswerLog()
    bus.subscribe(
        "observer", [RagEvent.ANSWER_GENERATED], log, concurrency=64, ephemeral=not durable
    )
    await bus.start()
    return bus, log


def assert_one_answer_each(log: AnswerLog, sent: list[Envelope]) -> None:
    """Every query answered, each with exactly one answer id: the derived one."""
    assert not log.missing(q.id for q in sent)
    wrong = {
        str(q.id): sorted(map(str, log.distinct_answer_ids(q.id)))
        for q in sent
        if log.distinct_answer_ids(q.id) != {answer_id(q)}
    }
    assert not wrong, f"queries with other or several answer ids: {wrong}"


async def metric_sum(processes: list[WorkerProcess], name: str, **labels: str) -> float:
    """The metric ``name`` (with ``labels``), summed over ``processes``."""
    samples = [await process.metrics() for process in processes]
    return sum(metrics.value(name, **labels) for metrics in samples)


async def idle(namespace: Namespace, processes: list[WorkerProcess]) -> bool:
    """Whether the stage queues are empty and no process has an event in flight."""
    topology = namespace.topology
    depths = await queue_depths(namespace.url, [topology.stage_queue(s) for s in STAGES])
    return not any(depths.values()) and not await metric_sum(processes, "ragbus_in_flight")


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.timeout(150)
async def test_a_killed_worker_loses_no_query(
    namespace: Namespace, workers: Workers, redis_url: str, cache_namespace: str
) -> None:
    # The workers share the processed-id set in Redis, as deployed workers do. The result
    # cache is off: its cross-process leases are another promise, and these questions
    # are all different anyway.
    options = {
        "lm_latency_ms": 150,
        "concurrency": 8,
        "shutdown_grace_s": 5,
        "cache_url": redis_url,
        "cache_namespace": cache_namespace,
        "cache_enabled": False,
    }
    *_, victim = await workers.start_many(3, **options)
    bus, log = await observer(namespace)
    sent = queries(200)
    started = time.monotonic()
    await asyncio.gather(*(bus.publish(query) for query in sent))

    async def victim_is_busy() -> bool:
        metrics = await victim.metrics()
        return (
            metrics.value("ragbus_processed_total", stage="generate") >= 5
            and metrics.value("ragbus_in_flight", stage="generate") > 0
        )

    await wait_until(
        victim_is_busy, what="the victim to have work in flight", timeout=30, report=workers.report
    )
    victim.kill()
    assert await victim.wait_exit(10) == -9
    killed_at = len(log.answered(q.id for q in sent))
    await workers.start(name="replacement", **options)
    await log.wait_for((q.id for q in sent), timeout=90, report=workers.report)
    print(
        f"200 queries in {time.monotonic() - started:.1f}s; {killed_at} answered at the kill; "
        f"{log.deliveries} answer deliveries"
    )
    assert_one_answer_each(log, sent)
    assert await bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter()) == []

    # Whichever worker a redelivery reaches drops an event another worker finished (its
    # id is in the shared set), and counts it. Which events the kill itself redelivered
    # after they were finished is a matter of microseconds, so deliver ten finished
    # queries again, as a broker redelivers them.
    survivors = [process for process in workers.processes if process.alive]
    await wait_until(
        lambda: idle(namespace, survivors),
        what="the survivors to finish the kill's redeliveries",
        timeout=30,
        report=workers.report,
    )
    dropped_after_kill = await metric_sum(survivors, DUPLICATES, stage="retrieve")
    answers = log.deliveries
    handled = await metric_sum(survivors, "ragbus_processed_total", stage="retrieve")
    again = sent[:10]
    await asyncio.gather(*(bus.publish(query) for query in again))

    async def all_dropped() -> bool:
        dropped = await metric_sum(survivors, DUPLICATES, stage="retrieve")
        return dropped == dropped_after_kill + len(again)

    await wait_until(
        all_dropped, what="the ten redelivered queries counted as duplicates", timeout=20
    )
    await wait_until(lambda: idle(namespace, survivors), what="the survivors idle", timeout=20)
    assert log.deliveries == answers, "a finished query was answered again"
    assert handled == await metric_sum(survivors, "ragbus_processed_total", stage="retrieve")
    print(f"{dropped_after_kill:g} redeliveries of finished events dropped after the kill")


POISON_WORKER = Path(__file__).with_name("poison_worker.py")


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_poison_message_that_kills_its_worker_ends_in_the_dlq(
    namespace: Namespace, workers: Workers
) -> None:
    limit = 3
    # The test bus declares the retrieve queue with the workers' delivery limit.
    bus, log = await observer(namespace, delivery_limit=limit, declare=("retrieve",))
    await workers.start("generate", name="generate")

    def poison_worker(name: str) -> Callable[[], WorkerProcess]:
        # prefetch 1: a dying process returns (and charges a delivery to) only the
        # message it was handling, not innocent ones prefetched beside it
        argv = [sys.executable, str(POISON_WORKER), "--stages", "retrieve"]
        argv += ["--delivery-limit", str(limit), "--marker", "POISON"]
        return lambda: workers.spawn(name=name, argv=argv, ready=POISON_READY, concurrency=1)

    supervisors = [workers.supervise(poison_worker(f"poison-{n}")) for n in "ab"]
    for supervisor in supervisors:
        assert supervisor.current is not None
        await supervisor.current.wait_ready(40)

    poison = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question="POISON: what kills?"))
    before, after = queries(15, "before "), queries(15, "after ")
    for query in [*before, poison, *after]:
        await bus.publish(query)

    def deaths() -> int:
        return sum(supervisor.restarts for supervisor in supervisors)

    async def dead_lettered() -> bool:
        return bool(await bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter(stage="retrieve")))

    await wait_until(
        dead_lettered,
        what="the poison message in the DLQ",
        timeout=60,
        interval=0.2,
        report=workers.report,
    )
    await log.wait_for((q.id for q in [*before, *after]), timeout=60, report=workers.report)
    # each delivery of the poison killed a worker: limit + 1 deliveries, then the DLQ
    await wait_until(
        lambda: deaths() >= limit + 1,
        what=f"{limit + 1} deaths of poison workers",
        timeout=10,
        report=workers.report,
    )
    assert deaths() == limit + 1
    assert {code for s in supervisors for code in s.exits} == {1}

    dlq = bus.topology.dead_letter_queue("retrieve")
    assert dlq == f"{namespace.prefix}.retrieve.dlq"
    assert await queue_depths(namespace.url, [dlq]) == {dlq: 1}
    [letter] = await bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter())
    assert letter.stage == "retrieve"
    assert letter.reason == DeadLetterReason.DELIVERY_LIMIT
    assert letter.attempts == limit + 1
    assert letter.event_id == str(poison.id)
    assert letter.envelope is not None
    assert letter.envelope["payload"]["question"] == "POISON: what kills?"
    assert_one_answer_each(log, [*before, *after])
    assert log.missing([poison.id]) == {poison.id}


@dataclass
class RetryingPublisher:
    """Publishes each event until the broker confirms it: the same envelope every time,
    so a copy that did arrive unconfirmed is a duplicate with the same id."""

    bus: RabbitMQBus
    failures: int = 0

    async def publish(self, event: Envelope, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                async with asyncio.timeout(5):
                    await self.bus.publish(event)
                return
            except (BusError, TimeoutError, ConnectionError, RuntimeError):
                self.failures += 1
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


@pytest.fixture
def local_broker(amqp_url: str) -> Iterator[str]:
    """The AMQP URL of a broker ``rabbitmqctl`` controls, for a test marked
    ``broker_restart`` (it runs only with the opt-in); after the test the broker's app
    is started again if it is down, whatever happened."""
    if not broker_is_local(amqp_url):
        unavailable(f"the broker of {amqp_url} is not local: rabbitmqctl cannot restart it")
    try:
        yield amqp_url
    finally:
        ensure_broker_running(amqp_url)


@pytest.mark.slow
@pytest.mark.broker_restart
@pytest.mark.timeout(180)
async def test_workers_and_clients_ride_out_a_broker_restart(
    namespace: Namespace, workers: Workers, local_broker: str
) -> None:
    options = {"lm_latency_ms": 100, "concurrency": 8, "shutdown_grace_s": 5}
    watched, other = await workers.start_many(2, **options)
    # a queue of the test's own (durable, unlike an exclusive one) keeps the answers
    # published while the test's connection is down
    bus, log = await observer(namespace, durable=True)
    publisher = RetryingPublisher(bus)
    early, late = queries(100, "early "), queries(50, "late ")
    await asyncio.gather(*(bus.publish(query) for query in early))
    await wait_until(
        lambda: len(log.answered(q.id for q in early)) >= 10,
        what="10 answers before the restart",
        timeout=30,
        report=workers.report,
    )

    outage = time.monotonic()
    publishing_late: asyncio.Future[list[None]] | None = None
    try:
        await broker_stop_app()
        # health tells the truth while the broker is gone
        await wait_until(lambda: _status_is(watched, 503), what="/healthz to say 503", timeout=10)
        publishing_late = asyncio.gather(*(publisher.publish(q, timeout=60) for q in late))
        await wait_until(lambda: publisher.failures > 0, what="a publish to fail", timeout=10)
    finally:
        await broker_start_app(local_broker)
    back = time.monotonic() - outage
    assert publishing_late is not None
    await asyncio.wait_for(publishing_late, 70)
    await log.wait_for((q.id for q in [*early, *late]), timeout=90, report=workers.report)
    print(f"broker back after {back:.1f}s; {publisher.failures} failed publishes retried")

    assert watched.alive and other.alive, "the workers resumed by themselves"
    for worker in (watched, other):
        await wait_until(
            lambda w=worker: _status_is(w, 200),  # type: ignore[misc]
            what=f"{worker.name}'s /healthz to say 200 again",
            timeout=15,
            report=workers.report,
        )
    assert_one_answer_each(log, [*early, *late])
    assert await bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter()) == []


async def _status_is(worker: WorkerProcess, status: int) -> bool:
    code, _ = await worker.healthz()
    return code == status


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_sigterm_drains_in_flight_events_and_leaves_the_rest(
    namespace: Namespace, workers: Workers
) -> None:
    grace = 20
    draining = await workers.start(
        name="draining", lm_latency_ms=1000, concurrency=4, shutdown_grace_s=grace
    )
    bus, log = await observer(namespace)
    sent = queries(24)
    await asyncio.gather(*(bus.publish(query) for query in sent))

    async def generate_is_full() -> bool:
        metrics = await draining.metrics()
        return metrics.value("ragbus_in_flight", stage="generate") == 4

    await wait_until(
        generate_is_full,
        what="4 generate events in flight",
        timeout=30,
        report=workers.report,
    )
    metrics = await draining.metrics()
    processed = metrics.value("ragbus_processed_total", stage="generate")
    in_flight = metrics.value("ragbus_in_flight", stage="generate")

    signalled = time.monotonic()
    draining.terminate()
    assert await draining.wait_exit(grace + 10) == 0
    took = time.monotonic() - signalled
    assert took < grace, f"the drain took {took:.1f}s, longer than the grace period"
    assert "draining in-flight events" in draining.log

    # Nothing lost while no worker runs: every query is answered or waits in a queue.
    topology = bus.topology
    stage_queues = [topology.stage_queue("retrieve"), topology.stage_queue("generate")]

    async def all_accounted_for() -> bool:
        waiting = await queue_depths(namespace.url, stage_queues)
        return len(log.answered(q.id for q in sent)) + sum(waiting.values()) == len(sent)

    await wait_until(
        all_accounted_for,
        what="every query answered or waiting in a queue after the drain",
        timeout=10,
    )
    by_draining = len(log.answered(q.id for q in sent))
    # what was in flight at SIGTERM was finished, not abandoned
    assert by_draining >= processed + in_flight
    assert by_draining < len(sent), "the drained worker should have left work behind"

    successor = await workers.start(name="successor", lm_latency_ms=50, concurrency=16)
    await log.wait_for((q.id for q in sent), timeout=60, report=workers.report)
    assert_one_answer_each(log, sent)
    assert log.deliveries == len(sent), "an event was handled twice"
    successor_metrics = await successor.metrics()
    assert successor_metrics.value("ragbus_processed_total", stage="generate") == (
        len(sent) - by_draining
    )


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_ops_endpoints_report_health_and_per_stage_metrics(
    namespace: Namespace, workers: Workers
) -> None:
    lm = start_lm_server()  # an LM over HTTP that the test can make fail
    try:
        lm.set(mode="error")
        worker = await workers.start(
            name="ops",
            lm_model="openai/test-model",
            lm_api_base=lm.api_base,
            lm_api_key="test",
            retry_initial_s=0.01,
            redelivery_delays_s=(0.5,),
        )
        status, report = await worker.healthz()
        assert status == 200
        assert report["ok"] is True
        assert report["stages"] == ["retrieve", "generate"]
        assert report["worker_id"] == "ops"

        bus, log = await observer(namespace)
        [failing] = queries(1, "failing ")
        await bus.publish(failing)

        async def generate_failed() -> bool:
            metrics = await worker.metrics()
            return metrics.value("ragbus_retried_total", stage="generate", kind="redelivery") >= 1

        await wait_until(
            generate_failed,
            what="a redelivery of the failing query",
            timeout=20,
            report=workers.report,
        )
        lm.set(mode="ok")
        sent = [failing, *queries(5)]
        await asyncio.gather(*(bus.publish(query) for query in sent[1:]))
        await publish_raw(bus, b"this is not JSON", RagEvent.QUERY_RECEIVED)
        await log.wait_for((q.id for q in sent), timeout=30, report=workers.report)

        async def invalid_dead_lettered() -> bool:
            metrics = await worker.metrics()
            return metrics.has("ragbus_dead_lettered_total", stage="retrieve", reason="invalid")

        await wait_until(
            invalid_dead_lettered,
            what="the invalid message dead-lettered",
            timeout=10,
            report=workers.report,
        )
        text = await worker.metrics_text()
    finally:
        lm.stop()

    metrics = Metrics.parse(text)
    assert metrics.families["ragbus_processed"] == "counter"
    assert metrics.families["ragbus_in_flight"] == "gauge"
    assert metrics.families["ragbus_handler_seconds"] == "histogram"
    for stage in ("retrieve", "generate"):
        assert metrics.value("ragbus_processed_total", stage=stage) == len(sent)
        assert metrics.has("ragbus_in_flight", stage=stage)
        assert metrics.value("ragbus_in_flight", stage=stage) == 0
        assert metrics.value("ragbus_handler_seconds_count", stage=stage) == len(sent)
        assert metrics.has("ragbus_handler_seconds_bucket", stage=stage, le="+Inf")
    failed = metrics.value("ragbus_failed_total", stage="generate", failure_class="transient")
    assert failed >= 1
    assert metrics.value("ragbus_retried_total", stage="generate", kind="in_process") >= 1
    assert metrics.value("ragbus_retried_total", stage="generate", kind="redelivery") >= 1
    assert metrics.value("ragbus_dead_lettered_total", stage="retrieve", reason="invalid") == 1
    assert metrics.value("ragbus_failed_total", stage="retrieve") == 0
    assert lm.failures >= 1


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_the_cli_asks_and_publishes_across_processes(
    namespace: Namespace, workers: Workers, tmp_path: Path
) -> None:
    retrieve, _ = await asyncio.gather(
        workers.start("retrieve", name="retrieve"), workers.start("generate", name="generate")
    )
    bus, log = await observer(namespace)

    question = "How does ragbus handle a failed event?"
    asked = await workers.run("ask", "--bus", "rabbitmq", question, timeout=60)
    assert asked.code == 0, asked.stderr
    assert asked.stdout.splitlines()[0].strip(), "the answer comes first"
    assert "Sources:" in asked.stdout
    assert "failures.md" in asked.stdout
    assert "Model: offline/extractive" in asked.stdout

    publish = ("publish", "--bus", "rabbitmq")
    bare = '{"question": "What does a dead letter record?"}'
    minimal = json.dumps(
        {"type": "query_received", "payload": {"question": "Which LM answers?", "k": 2}}
    )
    lines = tmp_path / "events.jsonl"
    lines.write_text(
        '{"question": "How do workers share a stage? (file)"}\n'
        '{"type": "query_received", "payload": {"question": "What is a sink? (file)"}}\n'
    )
    stdin = (
        '{"question": "How are retries delayed? (stdin)"}\n'
        '{"type": "query_received", "payload": {"question": "What is a breaker? (stdin)"}}\n'
    )
    results = await asyncio.gather(
        workers.run(*publish, bare, minimal),
        workers.run(*publish, "--file", str(lines)),
        workers.run(*publish, stdin=stdin),
    )
    published: list[uuid.UUID] = []
    for result in results:
        assert result.code == 0, result.stderr
        printed = [json.loads(line) for line in result.stdout.splitlines()]
        assert [line["type"] for line in printed] == ["query_received"] * 2, result.stdout
        published += [uuid.UUID(line["id"]) for line in printed]
    assert len(set(published)) == 6
    # each printed id is its query's id (the correlation id of the answer)
    await log.wait_for(published, timeout=30, report=workers.report)
    questions = [log.payloads[query]["question"] for query in published]
    assert questions[:3] == [
        "What does a dead letter record?",
        "Which LM answers?",
        "How do workers share a stage? (file)",
    ]
    sources = log.payloads[published[1]]["sources"]
    assert isinstance(sources, list) and 1 <= len(sources) <= 2, "k=2 reached the stage"

    never = '{"question": "Is this ever published?"}'
    invalid = await asyncio.gather(
        workers.run(*publish, '{"question": ""}'),
        workers.run(*publish, stdin=f"{never}\nnot JSON\n"),
        workers.run(*publish, never, '{"type": "nope", "payload": {}}'),
        workers.run(*publish, "--file", str(tmp_path / "missing.jsonl")),
        workers.run(*publish, stdin=""),
    )
    for result in invalid:
        assert result.code != 0
        assert result.stdout == "", "nothing is published when any input is invalid"
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("error: "), result.stderr
    assert "payload.question" in invalid[0].stderr
    assert "malformed JSON" in invalid[1].stderr
    assert "nope" in invalid[2].stderr
    assert "does not exist" in invalid[3].stderr
    assert "no events" in invalid[4].stderr

    # A last query, published after the invalid ones, is the eighth the stage handles.
    [last] = queries(1, "last ")
    await bus.publish(last)
    await log.wait_for([last.id], timeout=30, report=workers.report)
    handled = (await retrieve.metrics()).value("ragbus_processed_total", stage="retrieve")
    assert handled == 1 + len(published) + 1


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_a_worker_whose_ops_port_is_taken_stops_with_one_line(workers: Workers) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = await workers.run("worker", "--port", str(port), timeout=40)
    assert result.code == 3  # ExitCode.CONFIGURATION
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(
        f"error: cannot serve /healthz and /metrics on 127.0.0.1:{port}"
    )


@pytest.mark.slow
@pytest.mark.broker_restart
@pytest.mark.timeout(180)
async def test_a_replay_interrupted_by_a_broker_restart_loses_nothing(
    namespace: Namespace, workers: Workers, local_broker: str
) -> None:
    await workers.start(lm_latency_ms=20, concurrency=8, shutdown_grace_s=5)
    bus, log = await observer(namespace, durable=True)
    dead = queries(60, "replayed ")
    for query in dead:
        letter = DeadLetter.from_body(
            query.encode(), stage="retrieve", reason=DeadLetterReason.FAILED, error="LM was down"
        )
        await bus.dead_letters(STAGE_NAMES).add(letter)
    letters = await bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter(stage="retrieve"))
    assert len(letters) == 60
    failed_publishes = count_failed_publishes(bus)

    store = bus.dead_letters(STAGE_NAMES)
    replaying = asyncio.create_task(replay(bus, store, letters, rag.events, rate=25))  # about 2.4 s
    await wait_until(
        lambda: len(log.answered(q.id for q in dead)) >= 5,
        what="5 replayed queries answered before the restart",
        timeout=30,
        report=workers.report,
    )
    try:
        await broker_stop_app()
        # the broker stays down until the replay has felt it
        await wait_until(
            lambda: failed_publishes, what="a republish to fail while the broker is down"
        )
    finally:
        await broker_start_app(local_broker)
    first = await asyncio.wait_for(replaying, 120)
    # the restart really interrupted the replay: some republishes failed, their dead
    # letters were kept
    assert first.failed >= 1, first
    assert first.replayed + first.failed == len(dead), first

    async def settled() -> bool:
        try:
            remaining = await bus.dead_letters(STAGE_NAMES).select(
                DeadLetterFilter(stage="retrieve")
            )
        except (BusError, ConnectionError, RuntimeError):
            return False  # still reconnecting
        kept = {uuid.UUID(str((letter.envelope or {})["id"])) for letter in remaining}
        answered = log.answered(q.id for q in dead)
        return kept | answered == {q.id for q in dead}  # every one answered or still dead

    await wait_until(
        settled,
        what="every replayed query answered or still dead-lettered",
        timeout=60,
        report=workers.report,
    )
    remaining = await bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter(stage="retrieve"))
    second = await replay(bus, bus.dead_letters(STAGE_NAMES), remaining, rag.events)
    print(f"replay: {first.replayed} + {second.replayed} (first pass failed {first.failed})")
    assert second.failed == 0
    await log.wait_for((q.id for q in dead), timeout=90, report=workers.report)
    assert_one_answer_each(log, dead)
    assert await bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter()) == []


def count_failed_publishes(bus: RabbitMQBus) -> list[BaseException]:
    """A list that grows by each exception ``bus.publish`` raises from now on."""
    failures: list[BaseException] = []
    publish = bus.publish

    async def counting(envelope: Envelope, **options: Any) -> None:
        try:
            await publish(envelope, **options)
        except Exception as exc:
            failures.append(exc)
            raise

    bus.publish = counting  # type: ignore[method-assign]
    return failures
