"""The bus contract, run against every bus kind (see ``bus_kind`` in conftest)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from ragbus.bus.base import (
    Bus,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterReason,
    InboundMessage,
    Requeue,
)
from ragbus.bus.errors import UnknownStageError, UnroutableError
from ragbus.events import Envelope, new_event
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.pipelines.rag import pipeline as rag
from tests.conftest import BusFactory


def query(number: int) -> Envelope:
    return new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=f"question {number}"))


async def wait_for(predicate: object, timeout: float = 20.0) -> None:
    """Poll ``predicate()`` until true, or fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


class Recorder:
    """A handler that records what it saw and how many ran at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.seen: list[str] = []
        self.running = 0
        self.most_running = 0

    async def __call__(self, message: InboundMessage) -> None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.delay)
            self.seen.append(str(rag.events.decode(message.body).id))
        finally:
            self.running -= 1


async def test_every_event_reaches_its_stage_once(bus: Bus) -> None:
    recorder = Recorder()
    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], recorder, concurrency=8)
    await bus.start()
    events = [query(i) for i in range(50)]
    for event in events:
        await bus.publish(event)
    await wait_for(lambda: len(recorder.seen) >= 50)
    # A last event after all the others: once it is handled, a duplicate of an earlier
    # one (queued before it) would have been handled too.
    marker = query(50)
    await bus.publish(marker)
    await wait_for(lambda: str(marker.id) in recorder.seen)
    assert Counter(recorder.seen) == Counter(str(e.id) for e in [*events, marker])


async def test_concurrency_limit_is_honoured(bus: Bus) -> None:
    recorder = Recorder(delay=0.05)
    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], recorder, concurrency=3)
    await bus.start()
    for i in range(15):
        await bus.publish(query(i))
    await wait_for(lambda: len(recorder.seen) == 15)
    assert recorder.most_running == 3


async def test_fan_out_gives_each_group_every_event(bus: Bus) -> None:
    first, second = Recorder(), Recorder()
    bus.subscribe("audit", [RagEvent.QUERY_RECEIVED], first, concurrency=4)
    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], second, concurrency=4)
    await bus.start()
    events = [query(i) for i in range(20)]
    for event in events:
        await bus.publish(event)
    await wait_for(lambda: len(first.seen) == 20 and len(second.seen) == 20)
    assert sorted(first.seen) == sorted(second.seen) == sorted(str(e.id) for e in events)


async def test_publish_to_one_stage_skips_other_subscribers(bus: Bus) -> None:
    audit, retrieve = Recorder(), Recorder()
    bus.subscribe("audit", [RagEvent.QUERY_RECEIVED], audit, concurrency=1)
    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], retrieve, concurrency=1)
    await bus.start()
    event = query(1)
    await bus.publish(event, stage="retrieve")
    await wait_for(lambda: retrieve.seen == [str(event.id)])
    # A marker published to audit after: had the event reached audit's queue, audit
    # would have seen it first.
    marker = query(2)
    await bus.publish(marker, stage="audit")
    await wait_for(lambda: str(marker.id) in audit.seen)
    assert audit.seen == [str(marker.id)]


async def test_delayed_publish_arrives_after_the_delay(bus: Bus) -> None:
    recorder = Recorder()
    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], recorder, concurrency=1)
    await bus.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await bus.publish(query(1), stage="retrieve", delay=1.0)
    await wait_for(lambda: len(recorder.seen) == 1)
    assert loop.time() - started >= 0.9


async def test_requeue_returns_the_message_unharmed(bus: Bus) -> None:
    calls: list[int] = []
    done: list[str] = []

    async def refuse_twice(message: InboundMessage) -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise Requeue("breaker open")
        done.append(str(rag.events.decode(message.body).id))

    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], refuse_twice, concurrency=1)
    await bus.start()
    event = query(1)
    await bus.publish(event)
    await wait_for(lambda: done == [str(event.id)])
    assert len(calls) == 3


async def test_graceful_stop_finishes_in_flight_work(bus: Bus) -> None:
    recorder = Recorder(delay=0.5)
    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], recorder, concurrency=5)
    await bus.start()
    for i in range(5):
        await bus.publish(query(i))
    await wait_for(lambda: recorder.running == 5)
    await bus.stop(grace=10)
    assert len(recorder.seen) == 5
    assert recorder.running == 0


async def test_paused_stage_takes_nothing_until_resumed(bus: Bus) -> None:
    recorder = Recorder()
    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], recorder, concurrency=2)
    await bus.start()
    await bus.pause("retrieve")
    for i in range(5):
        await bus.publish(query(i))
    await asyncio.sleep(0.5)
    assert recorder.seen == []
    await bus.resume("retrieve")
    await wait_for(lambda: len(recorder.seen) == 5)


async def test_dead_letters_are_stored_filtered_and_removed(bus: Bus) -> None:
    store = bus.dead_letters(["retrieve", "generate"])
    letters = [
        DeadLetter.from_body(query(i).encode(), stage=stage, reason=reason, error="boom")
        for i, (stage, reason) in enumerate(
            [
                ("retrieve", DeadLetterReason.INVALID),
                ("retrieve", DeadLetterReason.FAILED),
                ("generate", DeadLetterReason.EXPIRED),
            ]
        )
    ]
    for letter in letters:
        await store.add(letter)
    everything = await store.select(DeadLetterFilter())
    assert {letter.id for letter in everything} == {letter.id for letter in letters}
    retrieve = await store.select(DeadLetterFilter(stage="retrieve"))
    assert {letter.reason for letter in retrieve} == {
        DeadLetterReason.INVALID,
        DeadLetterReason.FAILED,
    }
    expired = await store.select(DeadLetterFilter(reason=DeadLetterReason.EXPIRED))
    assert [letter.id for letter in expired] == [letters[2].id]
    assert await store.remove([letters[0].id]) == 1
    remaining = await store.select(DeadLetterFilter())
    assert {letter.id for letter in remaining} == {letters[1].id, letters[2].id}


async def test_a_dead_letter_store_sees_only_its_stages_and_refuses_others(
    make_bus: BusFactory,
) -> None:
    writer, reader = make_bus(), make_bus()
    await writer.connect()
    await reader.connect()
    try:
        everyone = writer.dead_letters(["retrieve", "generate"])
        letters = [
            DeadLetter.from_body(
                query(i).encode(), stage=stage, reason=DeadLetterReason.FAILED, error="x"
            )
            for i, stage in enumerate(["retrieve", "generate"])
        ]
        for letter in letters:
            await everyone.add(letter)
        # Another bus that declared nothing (a fresh process) finds them from the stages.
        fresh = reader.dead_letters(["retrieve", "generate"])
        assert {x.id for x in await fresh.select(DeadLetterFilter())} == {x.id for x in letters}
        only_generate = reader.dead_letters(["generate"])
        assert [x.id for x in await only_generate.select(DeadLetterFilter())] == [letters[1].id]
        assert await only_generate.remove([letters[0].id]) == 0  # not its stage
        made_up = DeadLetter.from_body(
            b"{}", stage="nope", reason=DeadLetterReason.FAILED, error="x"
        )
        with pytest.raises(UnknownStageError, match="unknown stage 'nope'"):
            await fresh.add(made_up)
        with pytest.raises(UnknownStageError):
            await fresh.select(DeadLetterFilter(stage="nope"))
        assert await fresh.remove([x.id for x in letters]) == 2
        assert await fresh.select(DeadLetterFilter()) == []
    finally:
        await writer.close()
        await reader.close()


async def test_delay_needs_a_stage_and_transient_takes_neither(bus: Bus) -> None:
    with pytest.raises(ValueError, match="needs a stage"):
        await bus.publish(query(1), delay=1.0)
    with pytest.raises(ValueError, match="no stage or delay"):
        await bus.publish(query(1), stage="retrieve", transient=True)


async def test_unroutable_event_is_an_error(make_bus: BusFactory) -> None:
    bus = make_bus()
    await bus.connect()
    try:
        await bus.start()
        with pytest.raises(UnroutableError):
            await bus.publish(
                new_event(RagEvent.ANSWER_GENERATED, {"question": "q", "answer": "a", "model": "m"})
            )
    finally:
        await bus.close()
