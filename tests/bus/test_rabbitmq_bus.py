"""Behaviour only the RabbitMQ bus has: topology, delivery limit, DLQ on the broker,
competing workers, Requeue without counting, and recovery after a dropped connection."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
from aiormq.exceptions import ChannelNotFoundEntity

from ragbus.bus.base import (
    DeadLetter,
    DeadLetterFilter,
    DeadLetterReason,
    DeadLetterStore,
    InboundMessage,
    Requeue,
)
from ragbus.bus.errors import PublishNotConfirmedError, UnroutableError
from ragbus.bus.rabbitmq import RabbitMQBus
from ragbus.bus.rabbitmq.dead_letters import (
    ATTEMPTS_HEADER,
    ID_HEADER,
    LAST_FAILED_HEADER,
    REASON_HEADER,
    STAGE_HEADER,
    decode_dead_letter,
    encode_dead_letter,
)
from ragbus.bus.rabbitmq.topology import Topology, tier_for
from ragbus.events import Envelope, new_event
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.pipelines.rag import pipeline as rag
from tests.amqp import Namespace
from tests.conftest import unavailable
from tests.foreign import publish_foreign

pytestmark = pytest.mark.rabbitmq


def query(number: int) -> Envelope:
    return new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=f"question {number}"))


def event_id(message: InboundMessage) -> str:
    return str(rag.events.decode(message.body).id)


def dead_letters(bus: RabbitMQBus, *stages: str) -> DeadLetterStore:
    """The store of ``stages`` (default: retrieve and generate)."""
    return bus.dead_letters(stages or ("retrieve", "generate"))


async def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll ``predicate()`` until true, or fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def queue_depth(url: str, name: str) -> int:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        assert queue.declaration_result.message_count is not None
        return queue.declaration_result.message_count
    finally:
        await connection.close()


def test_every_queue_of_a_stage_is_listed() -> None:
    topology = Topology(exchange="e", prefix="p", delay_tiers=(0.2, 5.0))
    assert topology.stage_queues("retrieve") == (
        "p.retrieve",
        "p.retrieve.dlq",
        "p.retrieve.retry.200",
        "p.retrieve.retry.5000",
    )


def test_tier_for_picks_the_smallest_sufficient_tier() -> None:
    tiers = (1.0, 5.0, 30.0, 120.0)
    assert tier_for(0.1, tiers) == 1.0
    assert tier_for(1.0, tiers) == 1.0
    assert tier_for(1.1, tiers) == 5.0
    assert tier_for(500.0, tiers) == 120.0


def test_dead_letter_headers_round_trip() -> None:
    letter = DeadLetter.from_body(
        query(1).encode(),
        stage="retrieve",
        reason=DeadLetterReason.EXPIRED,
        error=TimeoutError("too late"),
        attempts=3,
        worker_id="host:1",
    )
    body, headers = encode_dead_letter(letter)
    decoded = decode_dead_letter(body, headers, stage="retrieve", message_id="m", delivery_limit=20)
    assert decoded == letter
    raw = DeadLetter.from_body(b"[1]", stage="s", reason=DeadLetterReason.INVALID, error="x")
    body, headers = encode_dead_letter(raw)
    assert body == b"[1]"
    assert decode_dead_letter(body, headers, stage="s", message_id=None, delivery_limit=1) == raw


def test_broker_dead_letters_are_recognised() -> None:
    died = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    headers = {
        "x-death": [
            {"count": 1, "reason": "delivery_limit", "queue": "p.retrieve", "time": died},
            {"count": 2, "reason": "expired", "queue": "p.retrieve.retry.1000", "time": died},
        ],
        "x-first-death-reason": "expired",
    }
    body = query(1).encode()
    first = decode_dead_letter(body, headers, stage="retrieve", message_id="m1", delivery_limit=4)
    again = decode_dead_letter(body, headers, stage="retrieve", message_id="m1", delivery_limit=4)
    assert first.reason is DeadLetterReason.DELIVERY_LIMIT
    assert first.attempts == 5
    assert first.last_failed_at == died
    assert first.envelope is not None and first.raw is None
    assert first.id == again.id
    other = decode_dead_letter(body, headers, stage="generate", message_id="m1", delivery_limit=4)
    assert other.id != first.id
    plain = decode_dead_letter(b"oops", {}, stage="retrieve", message_id=None, delivery_limit=4)
    assert plain.reason is DeadLetterReason.FAILED and plain.raw == "oops"


def test_a_damaged_record_is_listed_with_what_can_be_read() -> None:
    letter = DeadLetter.from_body(
        query(1).encode(),
        stage="retrieve",
        reason=DeadLetterReason.FAILED,
        error=TimeoutError("LM down"),
        attempts=3,
    )
    body, headers = encode_dead_letter(letter)
    damaged = {
        **headers,
        ID_HEADER: "not-a-uuid",
        ATTEMPTS_HEADER: "three",
        LAST_FAILED_HEADER: "yesterday",
        REASON_HEADER: "gremlins",
        STAGE_HEADER: "nope",
    }

    def decode() -> DeadLetter:
        return decode_dead_letter(
            body, damaged, stage="retrieve", message_id="m", delivery_limit=20
        )

    decoded = decode()
    assert decoded.envelope == letter.envelope  # the event itself is intact
    assert (decoded.stage, decoded.reason, decoded.attempts) == (
        "retrieve",
        DeadLetterReason.FAILED,
        1,
    )
    assert decoded.error_message == "LM down"
    assert decoded.last_failed_at == letter.first_failed_at  # the readable time stands in
    assert decoded.id == decode().id  # the stand-in id is stable: it can be removed by it
    notes = " | ".join(decoded.notes)
    for name in (ID_HEADER, ATTEMPTS_HEADER, LAST_FAILED_HEADER, REASON_HEADER, STAGE_HEADER):
        assert name in notes
    assert "listed as 1" in notes and f"listed as {decoded.id}" in notes
    assert (
        decode_dead_letter(body, headers, stage="retrieve", message_id="m", delivery_limit=20).notes
        == []
    )
    # headers of kinds nobody expects: still a letter, never an exception
    for odd in (
        {ID_HEADER: 12345, ATTEMPTS_HEADER: None},
        {ID_HEADER: b"\xff\xfe", ATTEMPTS_HEADER: True, "x-ragbus-first-failed-at": 7},
        {"x-death": "not a list", "x-delivery-count": "x"},
        {"x-death": [{"reason": "delivery_limit", "count": "x", "time": "t"}]},
    ):
        odd_letter = decode_dead_letter(
            body, odd, stage="retrieve", message_id=None, delivery_limit=4
        )
        assert odd_letter.stage == "retrieve" and odd_letter.envelope == letter.envelope


async def test_a_malformed_header_never_aborts_a_listing(namespace: Namespace) -> None:
    bus = await namespace.bus()
    store = dead_letters(bus, "retrieve")
    good = [
        DeadLetter.from_body(
            query(i).encode(), stage="retrieve", reason=DeadLetterReason.FAILED, error="x"
        )
        for i in range(2)
    ]
    await store.add(good[0])
    # another client wrote this one, badly
    body, headers = encode_dead_letter(
        DeadLetter.from_body(
            query(9).encode(), stage="retrieve", reason=DeadLetterReason.FAILED, error="y"
        )
    )
    headers |= {ID_HEADER: "not-a-uuid", ATTEMPTS_HEADER: "many"}
    dlq = namespace.topology.dead_letter_queue("retrieve")
    await publish_foreign(namespace.url, "", dlq, body, headers=headers, message_id="foreign-1")
    await store.add(good[1])
    listed = await store.select(DeadLetterFilter(stage="retrieve"))
    assert len(listed) == 3
    by_id = {letter.id: letter for letter in listed}
    assert by_id[good[0].id] == good[0] and by_id[good[1].id] == good[1]
    [damaged] = [letter for letter in listed if letter.notes]
    assert damaged.envelope is not None and damaged.envelope["payload"]["question"] == "question 9"
    assert damaged.attempts == 1
    assert any("not-a-uuid" in note for note in damaged.notes)
    again = await dead_letters(await namespace.bus(), "retrieve").select(DeadLetterFilter())
    assert {letter.id for letter in again} == set(by_id)  # the same ids at every listing
    assert await store.remove([damaged.id]) == 1
    assert {letter.id for letter in await store.select(DeadLetterFilter())} == {
        good[0].id,
        good[1].id,
    }


async def test_topology_is_declared_as_documented(namespace: Namespace) -> None:
    bus = await namespace.bus(delivery_limit=7)
    await bus.declare("retrieve", [RagEvent.QUERY_RECEIVED])
    await bus.declare("retrieve", [RagEvent.QUERY_RECEIVED])  # idempotent
    topology = namespace.topology
    p = namespace.prefix
    replicated = {"x-queue-type": "quorum", "x-quorum-initial-group-size": 3}
    retry = {
        **replicated,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": f"{p}.retrieve",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    expected: dict[str, dict[str, Any]] = {
        f"{p}.retrieve": {
            **replicated,
            "x-delivery-limit": 7,
            "x-max-length": 1000,
            "x-overflow": "reject-publish",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": f"{p}.retrieve.dlq",
            "x-dead-letter-strategy": "at-least-once",
        },
        f"{p}.retrieve.dlq": {**replicated, "x-delivery-limit": 2**31 - 1},
        f"{p}.retrieve.retry.200": {**retry, "x-message-ttl": 200},
        f"{p}.retrieve.retry.500": {**retry, "x-message-ttl": 500},
    }
    connection = await aio_pika.connect(namespace.url)
    try:
        for name, arguments in expected.items():
            channel = await connection.channel()
            await channel.declare_queue(name, passive=True)
            # Redeclaring with the documented arguments succeeds only if they match.
            await channel.declare_queue(name, durable=True, arguments=arguments)
            await channel.close()
        channel = await connection.channel()
        await channel.declare_exchange(
            namespace.exchange, aio_pika.ExchangeType.TOPIC, durable=True, passive=True
        )
        # Routing: the event type reaches the stage queue through the exchange; a retry
        # queue feeds the stage queue after its TTL.
        exchange = await channel.get_exchange(namespace.exchange)
        await exchange.publish(aio_pika.Message(b"{}"), routing_key=RagEvent.QUERY_RECEIVED)
        await channel.default_exchange.publish(
            aio_pika.Message(b"[]"), routing_key=topology.retry_queue("retrieve", 0.2)
        )
        queue = await channel.get_queue(f"{p}.retrieve")
        bodies = set()
        async with asyncio.timeout(10):  # the retry queue's TTL is 0.2 s
            while bodies != {b"{}", b"[]"}:
                message = await queue.get(no_ack=True, fail=False)
                if message is None:
                    await asyncio.sleep(0.02)
                else:
                    bodies.add(message.body)
    finally:
        await connection.close()


async def test_unroutable_publishes_raise(namespace: Namespace) -> None:
    bus = await namespace.bus()
    await bus.declare("retrieve", [RagEvent.QUERY_RECEIVED])
    answer = new_event(RagEvent.ANSWER_GENERATED, {"question": "q", "answer": "a", "model": "m"})
    with pytest.raises(UnroutableError):
        await bus.publish(answer)
    with pytest.raises(UnroutableError):
        await bus.publish(query(1), stage="generate")
    with pytest.raises(UnroutableError):
        await bus.publish(query(1), stage="generate", delay=0.1)
    await bus.publish(answer, transient=True)  # best effort: never raises
    await bus.publish(query(2))  # routable: no error
    await bus.publish(query(3), stage="retrieve")


async def test_poison_message_ends_in_the_dlq_while_others_flow(namespace: Namespace) -> None:
    limit = 3
    bus = await namespace.bus(delivery_limit=limit)
    poison = query(0)
    poison_counts: list[int] = []
    handled: list[str] = []

    async def handler(message: InboundMessage) -> None:
        if event_id(message) == str(poison.id):
            poison_counts.append(message.delivery_count)
            raise RuntimeError("this message crashes the handler")
        handled.append(event_id(message))

    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], handler, concurrency=2)
    await bus.start()
    good = [query(i) for i in range(1, 21)]
    await bus.publish(poison)
    for event in good:
        await bus.publish(event)
    await wait_for(lambda: len(handled) == len(good))
    letters: list[DeadLetter] = []

    async def dead() -> None:
        nonlocal letters
        while not letters:
            letters = await dead_letters(bus).select(DeadLetterFilter(stage="retrieve"))
            await asyncio.sleep(0.05)

    await asyncio.wait_for(dead(), 10)
    assert sorted(handled) == sorted(str(e.id) for e in good)
    assert poison_counts == list(range(1, limit + 2))  # delivery_limit + 1 deliveries
    (letter,) = letters
    assert letter.reason is DeadLetterReason.DELIVERY_LIMIT
    assert letter.event_id == str(poison.id)
    assert letter.envelope == rag.events.decode(poison.encode()).model_dump(
        mode="json", exclude_none=True
    )
    assert letter.attempts == limit + 1
    again = await dead_letters(bus).select(DeadLetterFilter())
    assert [(x.id, x.attempts) for x in again] == [(letter.id, letter.attempts)]
    assert await dead_letters(bus).remove([letter.id]) == 1
    assert await dead_letters(bus).select(DeadLetterFilter()) == []


async def test_listing_the_dlq_twice_changes_nothing(namespace: Namespace) -> None:
    bus = await namespace.bus(delivery_limit=1)
    await bus.declare("retrieve", [RagEvent.QUERY_RECEIVED])
    letters = [
        DeadLetter.from_body(
            query(i).encode(), stage="retrieve", reason=DeadLetterReason.FAILED, error="boom"
        )
        for i in range(3)
    ]
    letters.append(
        DeadLetter.from_body(
            b"not json", stage="retrieve", reason=DeadLetterReason.INVALID, error="bad"
        )
    )
    store = dead_letters(bus)
    for letter in letters:
        await store.add(letter)
    dlq = namespace.topology.dead_letter_queue("retrieve")
    first = await store.select(DeadLetterFilter())
    for _ in range(4):  # more listings than the delivery limit of the stage queue
        assert await store.select(DeadLetterFilter()) == first
    assert [letter.id for letter in first] == [letter.id for letter in letters]
    assert first[3].raw == "not json" and first[3].envelope is None
    assert first == letters  # every field of the record survives the round trip
    assert await queue_depth(namespace.url, dlq) == 4
    # A second bus instance (another process, e.g. `ragbus dlq list`) sees the same.
    other = dead_letters(await namespace.bus())
    assert await other.select(DeadLetterFilter(stage="retrieve")) == first
    limited = await other.select(DeadLetterFilter(stage="retrieve", limit=2))
    assert limited == first[:2]


async def test_remove_removes_only_the_named_letters(namespace: Namespace) -> None:
    bus = await namespace.bus()
    letters = [
        DeadLetter.from_body(query(i).encode(), stage=stage, reason=reason, error="boom")
        for i, (stage, reason) in enumerate(
            [
                ("retrieve", DeadLetterReason.FAILED),
                ("retrieve", DeadLetterReason.EXPIRED),
                ("generate", DeadLetterReason.FAILED),
            ]
        )
    ]
    store = dead_letters(bus)
    for letter in letters:
        await store.add(letter)
    assert await store.remove([letters[0].id, letters[2].id, uuid.uuid4()]) == 2
    remaining = await store.select(DeadLetterFilter())
    assert [letter.id for letter in remaining] == [letters[1].id]
    assert await store.remove([letters[0].id]) == 0
    assert await store.remove([]) == 0


async def test_two_workers_share_the_work_exactly_once(namespace: Namespace) -> None:
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def recorder(worker: str) -> Callable[[InboundMessage], Any]:
        async def handle(message: InboundMessage) -> None:
            await asyncio.sleep(0.01)
            seen[worker].append(event_id(message))

        return handle

    first, second = await namespace.bus(), await namespace.bus()
    first.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], recorder("a"), concurrency=4)
    second.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], recorder("b"), concurrency=4)
    await first.start()
    await second.start()
    events = [query(i) for i in range(60)]
    await asyncio.gather(*(first.publish(event) for event in events))
    await wait_for(lambda: len(seen["a"]) + len(seen["b"]) >= len(events))
    # Stopping lets every handler finish and settle; a message not acknowledged by then
    # would still be in the queue (a duplicate in the making).
    await first.stop(grace=10)
    await second.stop(grace=10)
    assert await queue_depth(namespace.url, namespace.topology.stage_queue("retrieve")) == 0
    counts = Counter(seen["a"] + seen["b"])
    assert counts == Counter(str(e.id) for e in events)
    assert seen["a"] and seen["b"]


async def test_requeue_does_not_count_towards_the_delivery_limit(namespace: Namespace) -> None:
    limit = 2
    bus = await namespace.bus(delivery_limit=limit)
    counts: list[int] = []
    done: list[str] = []

    async def refuse_often(message: InboundMessage) -> None:
        counts.append(message.delivery_count)
        if len(counts) <= 3 * limit:
            raise Requeue("breaker open")
        done.append(event_id(message))

    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], refuse_often, concurrency=1)
    await bus.start()
    event = query(1)
    await bus.publish(event)
    await wait_for(lambda: done == [str(event.id)])
    assert counts == [1] * (3 * limit + 1)
    assert await dead_letters(bus).select(DeadLetterFilter()) == []


async def test_delayed_retry_reaches_only_its_stage(namespace: Namespace) -> None:
    bus = await namespace.bus()
    audit: list[str] = []
    retrieve: list[str] = []

    async def record_audit(message: InboundMessage) -> None:
        audit.append(event_id(message))

    async def record_retrieve(message: InboundMessage) -> None:
        retrieve.append(event_id(message))

    bus.subscribe("audit", [RagEvent.QUERY_RECEIVED], record_audit, concurrency=1)
    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], record_retrieve, concurrency=1)
    await bus.start()
    event = query(1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await bus.publish(event, stage="retrieve", delay=0.3)  # the 0.5 s tier
    await wait_for(lambda: retrieve == [str(event.id)])
    assert loop.time() - started >= 0.45
    # A marker published to audit now: had the retry reached audit's queue (when it
    # reached retrieve's), audit would have seen it first.
    marker = query(2)
    await bus.publish(marker, stage="audit")
    await wait_for(lambda: str(marker.id) in audit)
    assert audit == [str(marker.id)]


async def test_ephemeral_subscription_follows_events(namespace: Namespace) -> None:
    bus = await namespace.bus()
    seen: list[str] = []

    async def follow(message: InboundMessage) -> None:
        seen.append(event_id(message))

    bus.subscribe("client-1", [RagEvent.QUERY_RECEIVED], follow, concurrency=8, ephemeral=True)
    await bus.start()
    events = [query(i) for i in range(5)]
    for event in events:
        await bus.publish(event)
    await wait_for(lambda: len(seen) == 5)
    assert sorted(seen) == sorted(str(e.id) for e in events)
    # No DLQ or retry queues for an ephemeral group; its queue goes with the bus.
    queue = bus.subscription("client-1").queue_name
    await bus.close()
    with pytest.raises(ChannelNotFoundEntity):
        await queue_depth(namespace.url, queue)
    with pytest.raises(ChannelNotFoundEntity):
        await queue_depth(namespace.url, namespace.topology.dead_letter_queue("client-1"))


async def test_watchdog_restores_a_silently_vanished_consumer(
    namespace: Namespace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ragbus.bus.rabbitmq")
    bus = await namespace.bus(watchdog_interval=0.1)
    seen: list[str] = []

    async def handle(message: InboundMessage) -> None:
        seen.append(event_id(message))

    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], handle, concurrency=2)
    await bus.start()
    assert bus.healthy
    # Cancel the consumer behind aio-pika's back, as a lost consumer looks (#231, #334).
    subscription = bus.subscription("retrieve")
    assert subscription.channel is not None and subscription.consumer_tag is not None
    underlay = await subscription.channel.get_underlay_channel()
    await underlay.basic_cancel(subscription.consumer_tag)
    assert not bus.healthy
    await wait_for(lambda: bus.healthy, timeout=5)
    assert "re-establishing" in caplog.text
    await bus.publish(query(1))
    await wait_for(lambda: len(seen) == 1, timeout=5)


async def test_consumer_comes_back_after_the_server_cancels_it(namespace: Namespace) -> None:
    bus = await namespace.bus(watchdog_interval=0.1)
    seen: list[str] = []

    async def handle(message: InboundMessage) -> None:
        seen.append(event_id(message))

    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], handle, concurrency=2)
    await bus.start()
    # Deleting the queue makes the broker send basic.cancel to its consumer (#334).
    connection = await aio_pika.connect(namespace.url)
    try:
        channel = await connection.channel()
        await channel.queue_delete(namespace.topology.stage_queue("retrieve"))
    finally:
        await connection.close()
    await wait_for(lambda: not bus.healthy, timeout=5)
    await wait_for(lambda: bus.healthy, timeout=10)
    await bus.publish(query(1))  # the queue is back, bound to its event type
    await wait_for(lambda: len(seen) == 1, timeout=5)


async def test_unsettled_delivery_is_redelivered_after_a_drop(
    namespace: Namespace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ragbus.bus.rabbitmq")
    bus = await namespace.bus(reconnect_interval=0.2, watchdog_interval=0.2)
    release = asyncio.Event()
    seen: list[InboundMessage] = []

    async def slow(message: InboundMessage) -> None:
        seen.append(message)
        if len(seen) == 1:
            await release.wait()

    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], slow, concurrency=1)
    await bus.start()
    reconnects = count_reconnects(bus)
    event = query(1)
    await bus.publish(event)
    await wait_for(lambda: len(seen) == 1)
    assert await drop_connections(f"ragbus:{namespace.prefix}") >= 1
    await wait_for(lambda: len(reconnects) == 1, timeout=15)
    # The broker took the unacknowledged message back and delivers it again.
    await wait_for(lambda: len(seen) == 2, timeout=15)
    assert event_id(seen[1]) == str(event.id)
    assert seen[1].redelivered
    release.set()  # the first handler returns, but its channel is gone: the ack fails
    await wait_for(lambda: "ack failed" in caplog.text, timeout=5)
    await wait_for(lambda: bus.healthy, timeout=5)


def _rabbitmqctl() -> str:
    path = shutil.which("rabbitmqctl")
    if path is None:
        unavailable("rabbitmqctl is not available to drop connections")
        raise AssertionError("unreachable")
    return path


async def _run(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


def count_reconnects(bus: RabbitMQBus) -> list[object]:
    """A list that grows by one each time ``bus`` has reconnected (channels restored)."""
    reconnects: list[object] = []
    bus.connection.on_reconnect(lambda *args: reconnects.append(args))
    return reconnects


async def drop_connections(connection_name: str) -> int:
    """Close, broker side, every connection named ``connection_name`` (only ours)."""
    ctl = _rabbitmqctl()
    listing = await _run(ctl, "-q", "list_connections", "pid", "client_properties")
    pids = [
        line.split("\t", 1)[0]
        for line in listing.splitlines()
        if re.search(r'\{"connection_name","' + re.escape(connection_name) + r'"\}', line)
    ]
    for pid in pids:
        await _run(ctl, "close_connection", pid, "test: simulated broker restart")
    return len(pids)


async def test_consumers_resume_after_the_connection_drops(namespace: Namespace) -> None:
    _rabbitmqctl()
    bus = await namespace.bus(reconnect_interval=0.2, watchdog_interval=0.2)
    seen: list[str] = []

    async def handle(message: InboundMessage) -> None:
        seen.append(event_id(message))

    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], handle, concurrency=4)
    bus.subscribe("client", [RagEvent.QUERY_RECEIVED], handle, concurrency=4, ephemeral=True)
    await bus.start()
    reconnects = count_reconnects(bus)
    await bus.publish(query(0))
    await wait_for(lambda: len(seen) == 2)
    assert await drop_connections(f"ragbus:{namespace.prefix}") >= 1
    await wait_for(lambda: len(reconnects) == 1, timeout=15)
    await wait_for(lambda: bus.healthy, timeout=15)
    events = [query(i) for i in range(1, 11)]
    for event in events:
        await bus.publish(event)
    await wait_for(lambda: len(seen) == 2 + 2 * len(events))
    assert Counter(seen[2:]) == Counter(str(e.id) for e in events for _ in range(2))


@pytest.mark.broker_restart
async def test_consumers_resume_after_a_broker_restart(namespace: Namespace) -> None:
    ctl = _rabbitmqctl()
    bus = await namespace.bus(reconnect_interval=0.5, watchdog_interval=0.5)
    seen: list[str] = []

    async def handle(message: InboundMessage) -> None:
        seen.append(event_id(message))

    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], handle, concurrency=4)
    await bus.start()
    await bus.publish(query(0))
    await wait_for(lambda: len(seen) == 1)
    try:
        await _run(ctl, "stop_app")
        await wait_for(lambda: not bus.healthy, timeout=10)
        with pytest.raises(PublishNotConfirmedError):
            await bus.publish(query(99))
    finally:
        await _run(ctl, "start_app")
        await _run(ctl, "await_startup")
    await wait_for(lambda: bus.healthy, timeout=30)
    events = [query(i) for i in range(1, 11)]
    for event in events:
        await bus.publish(event)
    await wait_for(lambda: len(seen) == 1 + len(events))
    assert sorted(seen[1:]) == sorted(str(e.id) for e in events)


async def test_ephemeral_subscription_survives_pause_and_resume(namespace: Namespace) -> None:
    bus = await namespace.bus()
    await bus.declare("retrieve", [RagEvent.QUERY_RECEIVED])  # keeps events routable
    seen: list[str] = []

    async def follow(message: InboundMessage) -> None:
        seen.append(event_id(message))

    bus.subscribe("client", [RagEvent.QUERY_RECEIVED], follow, concurrency=2, ephemeral=True)
    await bus.start()
    await bus.pause("client")  # the auto-delete queue goes with its consumer
    assert bus.healthy
    await bus.resume("client")
    event = query(1)
    await bus.publish(event)
    await wait_for(lambda: seen == [str(event.id)])


async def test_health_returns_after_a_reconnect_without_the_watchdog(
    namespace: Namespace,
) -> None:
    _rabbitmqctl()
    # a watchdog that never checks within the test: only the reopened channels can say
    # that their consumers are back
    bus = await namespace.bus(reconnect_interval=0.2, watchdog_interval=3600)
    seen: list[str] = []

    async def handle(message: InboundMessage) -> None:
        seen.append(event_id(message))

    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], handle, concurrency=2)
    await bus.start()
    assert bus.healthy
    reconnects = count_reconnects(bus)
    assert await drop_connections(f"ragbus:{namespace.prefix}") >= 1
    await wait_for(lambda: len(reconnects) == 1, timeout=15)
    await wait_for(lambda: bus.healthy, timeout=5)
    await bus.publish(query(1))
    await wait_for(lambda: len(seen) == 1, timeout=5)
