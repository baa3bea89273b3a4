"""``Bus.queue_stats``: what a stage's queue holds and who consumes it, on both buses."""

from __future__ import annotations

import asyncio

from ragbus.bus.base import Bus, InboundMessage, QueueStats
from ragbus.payloads.rag import RagEvent
from tests.bus.test_bus_behaviour import query
from tests.polling import wait_until


async def test_depth_and_consumers_follow_the_queue(bus: Bus) -> None:
    release = asyncio.Event()
    taken: list[InboundMessage] = []

    async def held(message: InboundMessage) -> None:
        taken.append(message)
        await release.wait()

    assert await bus.queue_stats("retrieve") is None, "no queue yet"
    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], held, concurrency=1)
    await bus.start()
    for number in range(5):
        await bus.publish(query(number))
    await wait_until(lambda: len(taken) == 1, what="the first event in hand")

    async def four_waiting() -> bool:
        return await bus.queue_stats("retrieve") == QueueStats(messages=4, consumers=1)

    await wait_until(four_waiting, what="four events waiting, one consumer")
    await bus.pause("retrieve")
    # a quorum queue counts a cancelled consumer until its messages in hand are settled
    release.set()

    async def no_consumer() -> bool:
        return await bus.queue_stats("retrieve") == QueueStats(messages=4, consumers=0)

    await wait_until(no_consumer, what="no consumer while paused, four events waiting")
    await bus.resume("retrieve")

    async def drained() -> bool:
        return await bus.queue_stats("retrieve") == QueueStats(messages=0, consumers=1)

    await wait_until(drained, what="every event taken, the consumer back")
    assert len(taken) == 5
