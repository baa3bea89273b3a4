"""Behaviour only the memory bus has: bounded queues that block publishers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ragbus.bus.base import DeadLetterFilter, DeadLetterReason, InboundMessage
from ragbus.bus.memory import MemoryBus
from ragbus.events import new_event
from ragbus.payloads.rag import QueryReceived, RagEvent


def query(number: int) -> bytes:
    return new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=f"q{number}")).encode()


async def test_full_queue_blocks_the_publisher(tmp_path: Path) -> None:
    bus = MemoryBus(queue_size=5, dlq_path=tmp_path / "dlq.sqlite3")
    release = asyncio.Event()

    async def slow(message: InboundMessage) -> None:
        await release.wait()

    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], slow, concurrency=1)
    await bus.start()
    published = 0

    async def producer() -> None:
        nonlocal published
        for i in range(100):
            await bus.publish_raw(query(i), RagEvent.QUERY_RECEIVED)
            published += 1

    task = asyncio.create_task(producer())
    await asyncio.sleep(0.3)
    # one in the handler, five waiting: the producer is blocked, memory stays bounded
    assert published == 6
    assert bus.queue_depth("retrieve") == 5
    release.set()
    await asyncio.wait_for(task, 5)
    await bus.drain(timeout=5)
    assert published == 100
    await bus.close()


async def test_drain_waits_for_every_queue_to_empty(tmp_path: Path) -> None:
    bus = MemoryBus(queue_size=10, dlq_path=tmp_path / "dlq.sqlite3")
    handled: list[bytes] = []

    async def handler(message: InboundMessage) -> None:
        await asyncio.sleep(0.01)
        handled.append(message.body)

    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], handler, concurrency=2)
    await bus.start()
    for i in range(40):
        await bus.publish_raw(query(i), RagEvent.QUERY_RECEIVED)
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
    await bus.publish_raw(query(1), RagEvent.QUERY_RECEIVED)
    await bus.drain(timeout=5)
    letters = await bus.list_dead_letters(DeadLetterFilter())
    assert deliveries == [1, 2, 3]
    assert [letter.reason for letter in letters] == [DeadLetterReason.DELIVERY_LIMIT]
    assert letters[0].error_type == "RuntimeError"
    assert letters[0].envelope is not None
    await bus.close()
