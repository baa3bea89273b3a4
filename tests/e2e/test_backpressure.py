"""A producer ten times faster than the pipeline, on every bus: the stage queues sit at
their bound instead of growing, memory stays flat, and every question is answered (the
producer acts on ``QueueFullError`` by waiting as told and publishing again)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from ragbus.bus.base import Bus
from ragbus.bus.memory import MemoryBus
from ragbus.bus.rabbitmq import RabbitMQBus
from ragbus.client import Client
from ragbus.config import Settings
from ragbus.errors import QueueFullError
from ragbus.payloads.rag import RagEvent
from ragbus.pipelines.rag import GENERATE, RETRIEVE
from ragbus.pipelines.rag import pipeline as rag
from tests.conftest import BusFactory
from tests.polling import wait_until

BOUND = 20
QUESTIONS = 240
#: The stages answer at most CONCURRENCY / LATENCY_S questions a second (40 here) ...
CONCURRENCY = 4
LATENCY_S = 0.1
#: ... and the producer offers ten times that.
OFFERED_PER_S = 10 * CONCURRENCY / LATENCY_S


def rss_bytes() -> int:
    """This process's resident memory (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def depth(bus: Bus, stage: str) -> int:
    """Messages waiting in ``stage``'s queue."""
    if isinstance(bus, MemoryBus):
        return bus.queue_depth(stage)
    assert isinstance(bus, RabbitMQBus)
    async with bus.connection.channel() as channel:
        queue = await channel.declare_queue(bus.topology.stage_queue(stage), passive=True)
        count = queue.declaration_result.message_count
        return int(count or 0)


@pytest.mark.slow
async def test_a_producer_ten_times_too_fast_is_held_at_the_bound_and_loses_nothing(
    make_bus: BusFactory, settings: Settings
) -> None:
    settings = settings.model_copy(
        update={
            "cache_enabled": False,
            "concurrency": CONCURRENCY,
            "lm_latency_ms": LATENCY_S * 1000,
        }
    )
    bus = make_bus(queue_max_length=BOUND, queue_full_wait_s=0.5)
    answered: set[uuid.UUID] = set()
    published: set[uuid.UUID] = set()
    depths: dict[str, int] = {RETRIEVE: 0, GENERATE: 0}
    rss: list[int] = []
    refusals = 0

    async with Client(settings, app=rag, bus=bus, run_pipeline=True) as client:

        async def count_answers() -> None:
            async for event in client.events([RagEvent.ANSWER_GENERATED]):
                answered.add(event.correlation)

        async def sample() -> None:
            while True:
                for stage in depths:
                    depths[stage] = max(depths[stage], await depth(bus, stage))
                if len(answered) >= QUESTIONS // 4:
                    rss.append(rss_bytes())
                await asyncio.sleep(0.05)

        async def produce() -> None:
            nonlocal refusals
            for number in range(QUESTIONS):
                started = time.perf_counter()
                query = client.event({"question": f"How are failed events kept? ({number})"})
                while True:
                    try:
                        await client.publish(query)
                        break
                    except QueueFullError as exc:
                        refusals += 1
                        await asyncio.sleep(exc.retry_after or 1.0)
                published.add(query.correlation)
                await asyncio.sleep(max(0.0, 1 / OFFERED_PER_S - (time.perf_counter() - started)))

        counting = asyncio.create_task(count_answers())
        sampling = asyncio.create_task(sample())
        started = time.perf_counter()
        try:
            await asyncio.wait_for(produce(), 120)
            await wait_until(
                lambda: answered >= published,
                what=f"all {QUESTIONS} answers",
                timeout=60,
                report=lambda: f"{len(answered)} answered",
            )
        finally:
            for task in (counting, sampling):
                task.cancel()
            await asyncio.gather(counting, sampling, return_exceptions=True)
        took = time.perf_counter() - started

    assert len(published) == QUESTIONS
    assert answered == published  # 0 lost
    # the pipeline, not the producer, set the pace: about its capacity, far below the offer
    assert QUESTIONS / took < OFFERED_PER_S / 3
    # the queues filled up to their bound and no further; a quorum queue checks its bound
    # as messages arrive, so concurrent publishers overshoot it by a few at most
    overshoot = 0 if isinstance(bus, MemoryBus) else CONCURRENCY + 1
    for stage, deepest in depths.items():
        assert BOUND - 2 <= deepest <= BOUND + overshoot, (stage, depths)
    # memory stayed flat while the producer was held back
    assert len(rss) >= 5
    growth = max(rss) - rss[0]
    assert growth < 16 * 1024 * 1024, f"RSS grew by {growth / 2**20:.1f} MiB"
    print(  # the figures docs/BENCHMARKS.md records
        f"\n{type(bus).__name__}: {QUESTIONS} questions in {took:.1f}s "
        f"({QUESTIONS / took:.0f}/s, offered {OFFERED_PER_S:.0f}/s), deepest queues {depths}, "
        f"refusals {refusals}, RSS {rss[0] / 2**20:.0f} -> {rss[-1] / 2**20:.0f} MiB "
        f"(max growth {growth / 2**20:.1f} MiB)"
    )
