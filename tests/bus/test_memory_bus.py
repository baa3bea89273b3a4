"""Behaviour only the memory bus has: bounded queues that block publishers (and drop
transient events), a SQLite dead-letter file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from ragbus.bus.base import DeadLetter, DeadLetterFilter, DeadLetterReason, InboundMessage
from ragbus.bus.memory import TRANSIENT_WAIT_S, MemoryBus
from ragbus.events import Envelope, new_event
from ragbus.payloads.rag import AnswerToken, QueryReceived, RagEvent
from ragbus.pipelines.rag import pipeline as rag


def query(number: int) -> bytes:
    return new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=f"q{number}")).encode()


async def test_full_queue_blocks_the_publisher(tmp_path: Path) -> None:
    bus = MemoryBus(queue_max_length=5, dlq_path=tmp_path / "dlq.sqlite3")
    release = asyncio.Event()

    async def slow(message: InboundMessage) -> None:
        await release.wait()

    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], slow, concurrency=1)
    await bus.start()
    published = 0

    async def producer() -> None:
        nonlocal published
        for i in range(100):
            await bus.inject(query(i), RagEvent.QUERY_RECEIVED)
            published += 1

    task = asyncio.create_task(producer())
    async with asyncio.timeout(5):
        while published < 6:
            await asyncio.sleep(0.005)
    for _ in range(100):  # no I/O here: a producer that could go on would, within these
        await asyncio.sleep(0)
    # one in the handler, five waiting: the producer is blocked, memory stays bounded
    assert published == 6
    assert bus.queue_depth("retrieve") == 5
    release.set()
    await asyncio.wait_for(task, 5)
    await bus.drain(timeout=5)
    assert published == 100
    await bus.close()


async def test_drain_waits_for_every_queue_to_empty(tmp_path: Path) -> None:
    bus = MemoryBus(queue_max_length=10, dlq_path=tmp_path / "dlq.sqlite3")
    handled: list[bytes] = []

    async def handler(message: InboundMessage) -> None:
        await asyncio.sleep(0.01)
        handled.append(message.body)

    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], handler, concurrency=2)
    await bus.start()
    for i in range(40):
        await bus.inject(query(i), RagEvent.QUERY_RECEIVED)
    await bus.drain(timeout=10)
    assert len(handled) == 40
    await bus.close()


async def test_a_handler_that_keeps_crashing_ends_in_the_dlq(tmp_path: Path) -> None:
    bus = MemoryBus(dlq_path=tmp_path / "dlq.sqlite3", delivery_limit=3)
    deliveries: list[int] = []

    async def crash(message: InboundMessage) -> None:
        deliveries.append(message.delivery_count)
        raise RuntimeError("worker crashed")

    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], crash, concurrency=1)
    await bus.start()
    await bus.inject(query(1), RagEvent.QUERY_RECEIVED)
    await bus.drain(timeout=5)
    letters = await bus.dead_letters(["retrieve"]).select(DeadLetterFilter())
    assert deliveries == [1, 2, 3]
    assert [letter.reason for letter in letters] == [DeadLetterReason.DELIVERY_LIMIT]
    assert letters[0].error_type == "RuntimeError"
    assert letters[0].envelope is not None
    await bus.close()


async def test_a_handler_cancelled_from_within_is_redelivered_and_its_worker_goes_on(
    tmp_path: Path,
) -> None:
    bus = MemoryBus(dlq_path=tmp_path / "dlq.sqlite3")
    deliveries: list[tuple[bytes, int]] = []

    async def handler(message: InboundMessage) -> None:
        deliveries.append((message.body, message.delivery_count))
        if message.delivery_count == 1 and message.body == query_one:
            cancelled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            cancelled.cancel()
            await cancelled  # what awaiting a leader that was cancelled looks like

    query_one, query_two = query(1), query(2)
    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], handler, concurrency=1)
    await bus.start()
    await bus.inject(query_one, RagEvent.QUERY_RECEIVED)
    await bus.inject(query_two, RagEvent.QUERY_RECEIVED)
    await bus.drain(timeout=5)
    # the only worker survived: the second query was handled, the first one again
    assert sorted(deliveries) == sorted([(query_one, 1), (query_two, 1), (query_one, 2)])
    await bus.close()


def token(source: Envelope, number: int) -> Envelope:
    return source.derive(
        RagEvent.ANSWER_TOKEN, AnswerToken(sequence=number, text=f"t{number}"), part=number
    )


async def test_a_full_listener_queue_drops_transient_events_and_counts_them(
    tmp_path: Path,
) -> None:
    bus = MemoryBus(queue_max_length=2, dlq_path=tmp_path / "dlq.sqlite3")
    release = asyncio.Event()
    received: list[int] = []

    async def stuck_listener(message: InboundMessage) -> None:
        received.append(rag.events.decode(message.body).payload["sequence"])
        await release.wait()

    bus.subscribe("listener", [RagEvent.ANSWER_TOKEN], stuck_listener, concurrency=1)
    await bus.start()
    source = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question="q"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    for number in range(10):
        await bus.publish(token(source, number), transient=True)  # never raises, never blocks long
    # one in the listener, two queued; the fourth waited TRANSIENT_WAIT_S for room, then
    # it and every later one were dropped at once (the queue stayed full)
    assert bus.transient_dropped == 7
    assert loop.time() - started < TRANSIENT_WAIT_S * 3 + 2
    assert bus.queue_depth("listener") == 2
    release.set()
    await bus.drain(timeout=5)
    assert received == [0, 1, 2]
    await bus.publish(token(source, 10), transient=True)  # room again: delivered
    await bus.drain(timeout=5)
    assert received == [0, 1, 2, 10]
    assert bus.transient_dropped == 7
    await bus.close()


async def test_transient_events_nobody_listens_to_are_not_counted(tmp_path: Path) -> None:
    bus = MemoryBus(dlq_path=tmp_path / "dlq.sqlite3")
    source = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question="q"))
    await bus.publish(token(source, 0), transient=True)
    assert bus.transient_dropped == 0
    await bus.close()


async def test_a_damaged_sqlite_row_is_listed_with_what_can_be_read(tmp_path: Path) -> None:
    path = tmp_path / "dlq.sqlite3"
    store = MemoryBus(dlq_path=path).dead_letters(["retrieve"])
    sound = DeadLetter.from_body(
        query(1), stage="retrieve", reason=DeadLetterReason.FAILED, error="x"
    )
    await store.add(sound)
    with sqlite3.connect(path) as connection:  # another tool wrote this row, badly
        connection.execute(
            "INSERT INTO dead_letters VALUES (?,?,?,?,?,?,?)",
            ("not-a-uuid", "retrieve", "gremlins", "E", None, "yesterday", "{not json"),
        )
    listed = await store.select(DeadLetterFilter())
    assert len(listed) == 2
    [damaged] = [letter for letter in listed if letter.notes]
    assert (damaged.stage, damaged.reason, damaged.raw) == (
        "retrieve",
        DeadLetterReason.FAILED,
        "{not json",
    )
    notes = " | ".join(damaged.notes)
    assert "could not be read" in notes and "'not-a-uuid' is not a UUID" in notes
    assert [x.id for x in await store.select(DeadLetterFilter())] == [x.id for x in listed]
    assert await store.remove([damaged.id]) == 1
    assert await store.select(DeadLetterFilter()) == [sound]
