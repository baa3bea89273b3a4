"""The stage consumer: every failure class ends in exactly one place."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ragbus.bus.base import DeadLetterReason, InboundMessage, Requeue
from ragbus.errors import PermanentError, TransientError
from ragbus.events import Envelope, new_event
from ragbus.payloads.rag import DocumentsRetrieved, QueryReceived, RagEvent
from ragbus.pipelines.rag import pipeline as rag
from ragbus.runtime.cache import SharedCache
from ragbus.runtime.classify import BreakerOpenError
from ragbus.runtime.consumer import StageConsumer
from ragbus.runtime.guards.deadline import DeadlineGuard
from ragbus.runtime.guards.dedup import ProcessedEvents
from ragbus.runtime.guards.timeout import TimeoutGuard
from ragbus.runtime.stage import Handler, Stage
from tests.fakes import RecordingBus


async def echo(event: Envelope) -> list[Envelope]:
    question = event.payload["question"]
    return [
        event.derive(
            RagEvent.DOCUMENTS_RETRIEVED, DocumentsRetrieved(question=question, passages=[])
        )
    ]


def consumer_for(handler: Handler, **stage_options: object) -> tuple[StageConsumer, RecordingBus]:
    bus = RecordingBus()
    stage = Stage(
        name="retrieve",
        consumes=(RagEvent.QUERY_RECEIVED,),
        handler=handler,
        **stage_options,  # type: ignore[arg-type]
    )
    return StageConsumer(
        stage, bus, events=rag.events, middlewares=[DeadlineGuard(), TimeoutGuard()], worker_id="w1"
    ), bus


def delivery(event: Envelope | bytes) -> InboundMessage:
    body = event if isinstance(event, bytes) else event.encode()
    return InboundMessage(body=body, stage="retrieve")


def sample(consumer: StageConsumer, name: str) -> float:
    """The value of the retrieve stage's sample ``name`` (0 when absent)."""
    value = consumer.metrics.registry.get_sample_value(name, {"stage": "retrieve"})
    return 0.0 if value is None else value


def query(**options: object) -> Envelope:
    return new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question="q"), **options)  # type: ignore[arg-type]


async def test_outputs_are_published() -> None:
    consumer, bus = consumer_for(echo)
    event = query()
    await consumer(delivery(event))
    [(output, stage)] = bus.published
    assert output.type == RagEvent.DOCUMENTS_RETRIEVED
    assert output.causation_id == event.id
    assert stage is None
    assert not bus.letters
    assert sample(consumer, "ragbus_processed_total") == 1


async def test_invalid_message_is_dead_lettered_with_its_body() -> None:
    consumer, bus = consumer_for(echo)
    await consumer(delivery(b'{"type": "query_received", "payload": {}}'))
    [letter] = bus.letters
    assert letter.reason is DeadLetterReason.INVALID
    assert "payload.question" in letter.error_message
    assert letter.envelope == {"type": "query_received", "payload": {}}
    assert letter.worker_id == "w1"
    assert not bus.published


async def test_undecodable_message_keeps_its_raw_text() -> None:
    consumer, bus = consumer_for(echo)
    await consumer(delivery(b"not json at all"))
    [letter] = bus.letters
    assert letter.reason is DeadLetterReason.INVALID
    assert letter.raw == "not json at all"


async def test_event_of_another_type_is_invalid_here() -> None:
    consumer, bus = consumer_for(echo)
    other = new_event(RagEvent.DOCUMENTS_RETRIEVED, DocumentsRetrieved(question="q", passages=[]))
    await consumer(delivery(other))
    assert [letter.reason for letter in bus.letters] == [DeadLetterReason.INVALID]


async def test_expired_event_is_dead_lettered_not_processed() -> None:
    calls: list[Envelope] = []

    async def handler(event: Envelope) -> list[Envelope]:
        calls.append(event)
        return []

    consumer, bus = consumer_for(handler)
    await consumer(delivery(query(deadline=datetime.now(UTC) - timedelta(seconds=1))))
    assert calls == []
    assert [letter.reason for letter in bus.letters] == [DeadLetterReason.EXPIRED]


async def test_deadline_passing_while_handling_is_expired() -> None:
    async def slow(event: Envelope) -> list[Envelope]:
        await asyncio.sleep(5)
        return []

    consumer, bus = consumer_for(slow)
    await consumer(delivery(query(deadline=datetime.now(UTC) + timedelta(seconds=0.1))))
    assert [letter.reason for letter in bus.letters] == [DeadLetterReason.EXPIRED]


async def test_permanent_error_goes_to_the_dlq_at_once() -> None:
    async def broken(event: Envelope) -> list[Envelope]:
        raise PermanentError("document missing")

    consumer, bus = consumer_for(broken)
    await consumer(delivery(query()))
    [letter] = bus.letters
    assert (letter.reason, letter.error_type, letter.attempts) == (
        DeadLetterReason.FAILED,
        "PermanentError",
        1,
    )
    assert not bus.delayed


async def test_transient_error_is_redelivered_later_with_attempt_plus_one() -> None:
    async def flaky(event: Envelope) -> list[Envelope]:
        raise TransientError("LM 503")

    consumer, bus = consumer_for(flaky, max_attempts=3)
    event = query()
    await consumer(delivery(event))
    [(retry, stage, delay)] = bus.delayed
    assert (retry.id, retry.attempt, stage) == (event.id, 2, "retrieve")
    assert delay > 0
    assert not bus.letters


async def test_transient_error_after_max_attempts_is_dead_lettered() -> None:
    async def flaky(event: Envelope) -> list[Envelope]:
        raise TransientError("LM 503")

    consumer, bus = consumer_for(flaky, max_attempts=3)
    last = query().model_copy(update={"attempt": 3})
    await consumer(delivery(last))
    [letter] = bus.letters
    assert (letter.reason, letter.attempts) == (DeadLetterReason.FAILED, 3)
    assert not bus.delayed


async def test_retry_after_sets_the_redelivery_delay() -> None:
    async def limited(event: Envelope) -> list[Envelope]:
        raise TransientError("429", retry_after=7.0)

    consumer, bus = consumer_for(limited)
    await consumer(delivery(query()))
    assert bus.delayed[0][2] == 7.0


async def test_timeout_is_transient() -> None:
    async def hangs(event: Envelope) -> list[Envelope]:
        await asyncio.sleep(5)
        return []

    consumer, bus = consumer_for(hangs, timeout_s=0.05)
    await consumer(delivery(query()))
    assert len(bus.delayed) == 1


async def test_breaker_open_puts_the_message_back() -> None:
    async def refused(event: Envelope) -> list[Envelope]:
        raise BreakerOpenError("lm breaker open")

    consumer, bus = consumer_for(refused)
    with pytest.raises(Requeue):
        await consumer(delivery(query()))
    assert not bus.letters and not bus.delayed


async def test_an_event_the_stage_finished_is_dropped_by_its_id_and_counted() -> None:
    calls: list[Envelope] = []

    async def handler(event: Envelope) -> list[Envelope]:
        calls.append(event)
        return await echo(event)

    bus = RecordingBus()
    stage = Stage(name="retrieve", consumes=(RagEvent.QUERY_RECEIVED,), handler=handler)
    consumer = StageConsumer(
        stage, bus, events=rag.events, processed=ProcessedEvents(SharedCache())
    )
    event = query()
    await consumer(delivery(event))
    await consumer(delivery(event))  # redelivered after it was finished
    assert calls == [event]
    assert len(bus.published) == 1
    assert sample(consumer, "ragbus_processed_total") == 1
    assert sample(consumer, "ragbus_duplicates_dropped_total") == 1


async def test_an_event_whose_handling_failed_is_not_remembered_as_finished() -> None:
    calls: list[Envelope] = []

    async def flaky(event: Envelope) -> list[Envelope]:
        calls.append(event)
        if len(calls) == 1:
            raise TransientError("LM down")
        return await echo(event)

    bus = RecordingBus()
    stage = Stage(name="retrieve", consumes=(RagEvent.QUERY_RECEIVED,), handler=flaky)
    consumer = StageConsumer(
        stage, bus, events=rag.events, processed=ProcessedEvents(SharedCache())
    )
    event = query()
    await consumer(delivery(event))  # fails: a delayed redelivery is asked for
    [(retry, _, _)] = bus.delayed
    await consumer(delivery(retry))  # the redelivery is handled, not dropped
    assert [call.id for call in calls] == [event.id, event.id]
    assert len(bus.published) == 1
    assert sample(consumer, "ragbus_duplicates_dropped_total") == 0
