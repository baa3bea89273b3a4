"""Micro-batching: concurrent events share one call of a batch handler, and each event
gets its own result. No I/O."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from ragbus.bus.base import DeadLetterReason, InboundMessage
from ragbus.config import Settings
from ragbus.errors import PermanentError
from ragbus.events import Envelope
from ragbus.pipeline import Pipeline, StageContext
from ragbus.runtime.batching import Batcher
from ragbus.runtime.consumer import StageConsumer
from ragbus.stage_build import build_stage
from tests.fakes import RecordingBus


class Number(BaseModel):
    value: int


class Square(BaseModel):
    value: int
    square: int


def pipeline_with(calls: list[list[int]], *, size: int = 4, wait_s: float = 0.05) -> Pipeline:
    pipeline = Pipeline("squares")
    pipeline.event("number", Number)
    pipeline.event("square", Square)

    @pipeline.stage(consumes="number", produces="square", batch_size=size, batch_wait_s=wait_s)
    async def squares(numbers: list[Number]) -> list[Square | Exception]:
        calls.append([n.value for n in numbers])
        return [
            PermanentError(f"{n.value} is unlucky")
            if n.value == 13
            else Square(value=n.value, square=n.value**2)
            for n in numbers
        ]

    return pipeline


def stage_of(pipeline: Pipeline, settings: Settings) -> object:
    spec = pipeline.stages["squares"]
    return build_stage(spec, StageContext(pipeline=pipeline, stage=spec, settings=settings))


async def test_concurrent_events_share_calls_of_at_most_the_batch_size(settings: Settings) -> None:
    calls: list[list[int]] = []
    pipeline = pipeline_with(calls, size=4)
    stage = stage_of(pipeline, settings)
    events = [pipeline.events.new("number", {"value": n}) for n in range(10)]
    results = await asyncio.gather(*(stage.handler(e) for e in events))  # type: ignore[attr-defined]
    assert [len(call) for call in calls] == [4, 4, 2]  # the last one after the wait
    assert sorted(v for call in calls for v in call) == list(range(10))
    for event, (output,) in zip(events, results, strict=True):
        assert output.payload["square"] == event.payload["value"] ** 2
        assert output.causation_id == event.id


async def test_a_lone_event_waits_at_most_the_batch_wait(settings: Settings) -> None:
    calls: list[list[int]] = []
    pipeline = pipeline_with(calls, size=16, wait_s=0.05)
    stage = stage_of(pipeline, settings)
    async with asyncio.timeout(2):
        (output,) = await stage.handler(pipeline.events.new("number", {"value": 3}))  # type: ignore[attr-defined]
    assert calls == [[3]] and output.payload["square"] == 9


async def test_one_bad_item_is_dead_lettered_alone_the_others_answered(
    settings: Settings,
) -> None:
    calls: list[list[int]] = []
    pipeline = pipeline_with(calls, size=4)
    stage = stage_of(pipeline, settings)
    bus = RecordingBus()
    consumer = StageConsumer(stage, bus, events=pipeline.events)  # type: ignore[arg-type]
    events = [pipeline.events.new("number", {"value": n}) for n in (12, 13, 14, 15)]
    await asyncio.gather(
        *(consumer(InboundMessage(body=e.encode(), stage="squares")) for e in events)
    )
    assert calls == [[12, 13, 14, 15]]
    assert sorted(e.payload["value"] for e, _ in bus.published) == [12, 14, 15]
    (letter,) = bus.letters
    assert letter.reason is DeadLetterReason.FAILED and "13 is unlucky" in letter.error_message


async def test_a_failing_batch_fails_each_event_and_wrong_counts_are_caught() -> None:
    async def broken(events: list[Envelope]) -> list[list[Envelope] | BaseException]:
        raise ConnectionError("LM down")

    async def short(events: list[Envelope]) -> list[list[Envelope] | BaseException]:
        return [[]]

    event = Envelope(type="number", payload={"value": 1})
    for handler, error in ((broken, ConnectionError), (short, PermanentError)):
        batcher = Batcher(handler, size=2, max_wait_s=0.01)
        results = await asyncio.gather(batcher(event), batcher(event), return_exceptions=True)
        assert all(isinstance(result, error) for result in results)


async def test_an_event_cancelled_while_waiting_leaves_the_batch() -> None:
    seen: list[int] = []

    async def handler(events: list[Envelope]) -> list[list[Envelope] | BaseException]:
        seen.append(len(events))
        return [[] for _ in events]

    batcher = Batcher(handler, size=3, max_wait_s=0.2)
    waiting = asyncio.create_task(batcher(Envelope(type="number", payload={"value": 1})))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await batcher(Envelope(type="number", payload={"value": 2})) == []
    assert seen == [1]
