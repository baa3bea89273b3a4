"""Cancelled requests: a bounded set whose ids expire, and handler calls that stop (no
I/O)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ragbus.bus.base import InboundMessage
from ragbus.events import new_event
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.runtime.cache import SharedCache
from ragbus.runtime.cancellation import (
    Cancellations,
    ExpiringSet,
    RequestCancelled,
    cancel_event,
)
from ragbus.runtime.guards.cache import ResultCacheGuard
from ragbus.runtime.metrics import Metrics
from tests.unit.test_guards import CountingHandler, query, stage


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ids_expire_after_their_time_to_live() -> None:
    clock = Clock()
    cancelled = ExpiringSet(ttl_s=10, clock=clock)
    first = uuid.uuid4()
    cancelled.add(first)
    clock.now = 9.9
    assert first in cancelled
    clock.now = 10.0
    assert first not in cancelled
    assert len(cancelled) == 0


def test_the_set_is_bounded_and_forgets_the_oldest() -> None:
    cancelled = ExpiringSet(max_size=3, ttl_s=60, clock=Clock())
    ids = [uuid.uuid4() for _ in range(5)]
    for item in ids:
        cancelled.add(item)
    assert len(cancelled) == 3
    assert [item in cancelled for item in ids] == [False, False, True, True, True]


def _count(cancellations: Cancellations) -> float:
    return float(cancellations.counter.labels("s")._value.get())


async def test_an_event_of_a_cancelled_request_does_not_run() -> None:
    cancellations = Cancellations(Metrics())
    event = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question="q"))
    ran = False

    async def work() -> list[object]:
        nonlocal ran
        ran = True
        return []

    await cancellations.on_message(
        InboundMessage(body=cancel_event(event.correlation).encode(), stage="c")
    )
    with pytest.raises(RequestCancelled):
        await cancellations.run("s", event, work())
    assert not ran
    assert _count(cancellations) == 1


async def test_a_running_call_is_cancelled_and_others_go_on() -> None:
    cancellations = Cancellations(Metrics())
    mine = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question="q"))
    other = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question="q"))
    started = asyncio.Event()

    async def work() -> str:
        started.set()
        await asyncio.sleep(0.2)
        return "done"

    running = asyncio.create_task(cancellations.run("s", mine, work()))
    untouched = asyncio.create_task(cancellations.run("s", other, work()))
    await started.wait()
    cancellations.cancel(mine.correlation)
    with pytest.raises(RequestCancelled):
        await running
    assert await untouched == "done"
    assert _count(cancellations) == 1


async def test_stopping_the_runtime_is_not_a_cancelled_request() -> None:
    cancellations = Cancellations(Metrics())
    event = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question="q"))
    running = asyncio.create_task(cancellations.run("s", event, asyncio.sleep(10)))
    await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert _count(cancellations) == 0


async def test_an_invalid_control_event_is_ignored() -> None:
    cancellations = Cancellations(Metrics())
    await cancellations.on_message(InboundMessage(body=b"{not json", stage="c"))
    assert len(cancellations.cancelled) == 0


async def test_a_cancelled_leader_lets_a_coalesced_question_take_over() -> None:
    # two clients ask the same question: the second waits for the first's call; the
    # first leaves, and the second still gets its answer (its own call)
    handler = CountingHandler(delay=0.1)
    guard = ResultCacheGuard(SharedCache())
    cancellations = Cancellations(Metrics())
    leaving, staying = query("What is ragbus?"), query("What is ragbus?")
    first = asyncio.create_task(
        cancellations.run("s", leaving, guard(stage(handler), leaving, handler))
    )
    await asyncio.sleep(0.02)
    second = asyncio.create_task(guard(stage(handler), staying, handler))
    await asyncio.sleep(0.02)
    cancellations.cancel(leaving.correlation)
    with pytest.raises(RequestCancelled):
        await first
    [answer] = await second
    assert answer.causation_id == staying.id
    assert handler.calls == 2
