"""Bounded stage queues, on every bus: a full queue refuses publishers, a refused publisher
waits and tries again within its budget, then fails with ``QueueFullError``; nothing the
queue took is lost.

A RabbitMQ quorum queue takes one message beyond its ``x-max-length`` before it refuses
the next (measured on 3.10.8): it checks the bound after an enqueue, not before.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta
from pathlib import Path

import pytest

from ragbus.bus.base import Bus
from ragbus.bus.memory import MemoryBus
from ragbus.errors import QueueFullError, TransientError
from ragbus.events import utc_now
from ragbus.payloads.rag import RagEvent
from tests.bus.test_bus_behaviour import Recorder, query, wait_for
from tests.conftest import BusFactory

BOUND = 5


async def _full_stage(
    make_bus: BusFactory, recorder: Recorder, *, wait_s: float
) -> tuple[Bus, int]:
    """A connected bus whose ``retrieve`` stage is subscribed, not started, and full: it
    took :data:`BOUND` events (one more on RabbitMQ, see the module's docstring): the
    bus and how many it took. The events filling it have no time to wait: refused at
    once."""
    bus = make_bus(queue_max_length=BOUND, queue_full_wait_s=wait_s)
    await bus.connect()
    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], recorder, concurrency=1)
    await bus.declare("retrieve", [RagEvent.QUERY_RECEIVED])
    taken = 0
    with contextlib.suppress(QueueFullError):
        while taken <= BOUND + 1:
            await bus.publish(query(taken).model_copy(update={"deadline": utc_now()}))
            taken += 1
    assert BOUND <= taken <= BOUND + 1
    return bus, taken


async def test_a_full_queue_refuses_a_publisher_after_its_wait(make_bus: BusFactory) -> None:
    recorder = Recorder()
    bus, taken = await _full_stage(make_bus, recorder, wait_s=0.3)
    try:
        started = time.perf_counter()
        with pytest.raises(QueueFullError) as refused:
            await bus.publish(query(BOUND + 2))
        waited = time.perf_counter() - started
        assert 0.25 <= waited < 3.0
        assert isinstance(refused.value, TransientError)  # a stage's output is retried later
        assert refused.value.retry_after is not None and refused.value.retry_after > 0
        assert "full" in str(refused.value)
        await bus.start()
        await wait_for(lambda: len(recorder.seen) == taken)
        await asyncio.sleep(0.2)
        assert len(recorder.seen) == taken  # what was taken arrives, nothing else
    finally:
        await bus.close()


async def test_a_refused_publisher_gets_in_once_the_stage_catches_up(
    make_bus: BusFactory,
) -> None:
    recorder = Recorder()
    bus, taken = await _full_stage(make_bus, recorder, wait_s=10.0)
    try:
        late = query(BOUND + 2)
        publishing = asyncio.create_task(bus.publish(late))
        await asyncio.sleep(0.3)
        assert not publishing.done()  # waiting for room, not failing
        await bus.start()
        await asyncio.wait_for(publishing, 10)
        await wait_for(lambda: str(late.id) in recorder.seen)
        assert len(recorder.seen) == taken + 1
    finally:
        await bus.close()


async def test_the_deadline_cuts_the_wait_short(make_bus: BusFactory) -> None:
    bus, _ = await _full_stage(make_bus, Recorder(), wait_s=30.0)
    try:
        late = query(BOUND + 2).model_copy(update={"deadline": utc_now() + timedelta(seconds=0.3)})
        started = time.perf_counter()
        with pytest.raises(QueueFullError):
            await bus.publish(late)
        assert time.perf_counter() - started < 5.0
    finally:
        await bus.close()


async def test_a_delayed_redelivery_waits_for_room_on_the_memory_bus(tmp_path: Path) -> None:
    # Memory bus only: on RabbitMQ 3.10.8 a retry whose delay ends while its stage queue
    # is full leaves the retry queue and had not arrived 3 s after the queue had room
    # again (docs/rabbitmq.md, "Bounded stage queues").
    recorder = Recorder()
    bus, taken = await _full_stage(
        lambda **options: MemoryBus(dlq_path=tmp_path / "dlq.sqlite3", **options),  # type: ignore[arg-type]
        recorder,
        wait_s=0.2,
    )
    try:
        retries = [query(100 + number) for number in range(3)]
        for retry in retries:
            await bus.publish(retry, stage="retrieve", delay=0.1)
        await asyncio.sleep(0.3)  # the delay passed while the stage queue was full
        await bus.start()
        await wait_for(lambda: len(recorder.seen) >= taken + len(retries))
        assert {str(retry.id) for retry in retries} <= set(recorder.seen)
    finally:
        await bus.close()
