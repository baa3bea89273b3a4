"""Operating dead letters in process: replay after a fix, filters, dry runs (the
``ragbus dlq`` commands, from fresh processes: ``test_dlq_cli.py``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest

from ragbus.bus.base import Bus, DeadLetter, DeadLetterFilter, DeadLetterReason
from ragbus.bus.errors import PublishNotConfirmedError
from ragbus.client import Client
from ragbus.config import Settings
from ragbus.dlq import replay, replay_event
from ragbus.errors import PermanentError
from ragbus.events import Envelope, new_event
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.pipelines.rag import STAGE_NAMES
from ragbus.pipelines.rag import pipeline as rag
from ragbus.runtime.stage import Handler
from tests.conftest import BusFactory
from tests.fakes import RecordingBus, RecordingDeadLetters


class Outage:
    """A retrieve stage that fails permanently on questions containing "shard-7" until
    the cause is fixed."""

    def __init__(self) -> None:
        self.fixed = False

    def wrap(self, real: Handler) -> Handler:
        async def handler(event: Envelope) -> list[Envelope]:
            if not self.fixed and "shard-7" in event.payload["question"]:
                raise PermanentError("index shard 7 is missing")
            return await real(event)

        return handler


async def wait_until(predicate: object, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def test_failed_events_are_answered_after_the_fix_and_replay(
    make_bus: BusFactory, settings: Settings
) -> None:
    outage = Outage()
    app = rag.wrap_stage("retrieve", outage.wrap)
    bus = make_bus()
    answered: dict[str, Envelope] = {}
    questions = [f"How does replay work? shard-{n % 10}" for n in range(40)]  # 4 break
    async with Client(settings, app=app, bus=bus, run_pipeline=True) as client:

        async def collect() -> None:
            async for event in client.events([RagEvent.ANSWER_GENERATED]):
                answered[str(event.correlation_id)] = event

        collector = asyncio.create_task(collect())
        await asyncio.sleep(0)  # the collector runs: it registers before its first await
        sent = [await client.publish({"question": q}) for q in questions]

        store = bus.dead_letters(STAGE_NAMES)

        async def letters() -> list[DeadLetter]:
            return await store.select(DeadLetterFilter())

        async def settled() -> bool:
            return len(answered) + len(await letters()) == 40

        await wait_until(settled)
        dead = await letters()
        assert len(dead) == 4
        assert {d.reason for d in dead} == {DeadLetterReason.FAILED}
        assert {d.error_type for d in dead} == {"PermanentError"}
        assert all("shard-7" in (d.envelope or {})["payload"]["question"] for d in dead)

        outage.fixed = True
        summary = await replay(bus, store, dead, rag.events)
        assert (summary.replayed, summary.skipped, summary.failed) == (4, 0, 0)

        async def all_answered() -> bool:
            return len(answered) == 40

        await wait_until(all_answered)
        collector.cancel()
        assert await store.select(DeadLetterFilter()) == []
    assert set(answered) == {str(event.id) for event in sent}


async def test_filters_select_exactly_and_dry_run_changes_nothing(bus: Bus) -> None:
    records = [
        ("retrieve", DeadLetterReason.FAILED, "PermanentError"),
        ("retrieve", DeadLetterReason.EXPIRED, "EventExpired"),
        ("generate", DeadLetterReason.FAILED, "LMServerError"),
        ("generate", DeadLetterReason.INVALID, "InvalidEvent"),
    ]
    events = [new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=f"q{n}")) for n in range(4)]
    store = bus.dead_letters(STAGE_NAMES)
    for event, (stage, reason, error_type) in zip(events, records, strict=True):
        letter = DeadLetter.from_body(event.encode(), stage=stage, reason=reason, error="x")
        await store.add(letter.model_copy(update={"error_type": error_type}))

    async def ids(**where: object) -> set[str]:
        found = await store.select(DeadLetterFilter(**where))  # type: ignore[arg-type]
        return {str(letter.envelope["id"]) for letter in found if letter.envelope}

    assert await ids(stage="retrieve") == {str(events[0].id), str(events[1].id)}
    assert await ids(reason=DeadLetterReason.FAILED) == {str(events[0].id), str(events[2].id)}
    assert await ids(error_type="LMServerError") == {str(events[2].id)}
    assert await ids(correlation_id=str(events[3].id)) == {str(events[3].id)}
    assert len(await ids(limit=3)) == 3
    before = await store.select(DeadLetterFilter())
    summary = await replay(bus, store, before, rag.events, dry_run=True)
    assert summary.replayed == 4
    assert await store.select(DeadLetterFilter()) == before


def test_replay_event_resets_attempt_counts_replays_and_keeps_ids() -> None:
    event = new_event(RagEvent.QUERY_RECEIVED, {"question": "q"}).model_copy(update={"attempt": 5})
    letter = DeadLetter.from_body(
        event.encode(), stage="retrieve", reason=DeadLetterReason.FAILED, error="x"
    )
    replayed = replay_event(letter, rag.events)
    assert (replayed.id, replayed.attempt, replayed.replays) == (event.id, 1, 1)
    minimal = DeadLetter.from_body(
        b'{"type": "query_received", "payload": {"question": "q"}}',
        stage="retrieve",
        reason=DeadLetterReason.FAILED,
        error="x",
    )
    assert (
        replay_event(minimal, rag.events).id == replay_event(minimal, rag.events).id
    )  # stable across replays
    raw = DeadLetter.from_body(
        b"not json", stage="retrieve", reason=DeadLetterReason.INVALID, error="x"
    )
    with pytest.raises(ValueError, match="not a JSON event"):
        replay_event(raw, rag.events)


class FlakyBus(RecordingBus):
    """Refuses to publish the events whose question mentions "refused"."""

    async def publish(
        self,
        envelope: Envelope,
        *,
        stage: str | None = None,
        delay: float | None = None,
        transient: bool = False,
    ) -> None:
        if "refused" in str(envelope.payload.get("question", "")):
            raise PublishNotConfirmedError("nack")
        await super().publish(envelope, stage=stage, delay=delay, transient=transient)


class CountingStore(RecordingDeadLetters):
    """Counts the removals asked of it."""

    removals: list[int]

    async def remove(self, ids: Sequence[uuid.UUID]) -> int:
        self.removals.append(len(ids))
        return await super().remove(ids)


async def test_replay_removes_only_what_the_broker_confirmed_in_batches() -> None:
    bus = FlakyBus()
    store = CountingStore(bus.letters, STAGE_NAMES)
    store.removals = []
    questions = [f"q{n}" + (" refused" if n % 50 == 7 else "") for n in range(250)]
    letters = [
        DeadLetter.from_body(
            new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=q)).encode(),
            stage="retrieve",
            reason=DeadLetterReason.FAILED,
            error="x",
        )
        for q in questions
    ]
    for letter in letters:
        await store.add(letter)
    summary = await replay(bus, store, letters, rag.events)
    assert (summary.replayed, summary.skipped, summary.failed) == (245, 0, 5)
    assert sum(store.removals) == 245 and len(store.removals) == 3  # 100 + 100 + 45
    assert [envelope.payload["question"] for envelope, _ in bus.published] == [
        q for q in questions if "refused" not in q
    ]
    assert {stage for _, stage in bus.published} == {"retrieve"}  # to its stage only
    assert {envelope.attempt for envelope, _ in bus.published} == {1}
    assert {envelope.replays for envelope, _ in bus.published} == {1}
    kept = await store.select(DeadLetterFilter())
    assert [letter.envelope["payload"]["question"] for letter in kept if letter.envelope] == [
        q for q in questions if "refused" in q
    ]
    assert all("failed: PublishNotConfirmedError: nack" in p for p in summary.problems)
