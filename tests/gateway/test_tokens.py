"""Answer tokens: the generate stage streams them through ``emit``; buses publish them as
transient events that never fail and are dropped when nobody listens."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from ragbus.bus.base import InboundMessage, emitter
from ragbus.bus.memory import MemoryBus
from ragbus.bus.rabbitmq import RabbitMQBus
from ragbus.events import Envelope, new_event
from ragbus.handlers import GenerateHandler
from ragbus.lm import offline_lm
from ragbus.payloads.rag import AnswerToken, DocumentsRetrieved, Passage, QueryReceived, RagEvent
from ragbus.streaming import TokenEmitter
from tests.conftest import BusFactory
from tests.polling import wait_until

PASSAGES = [
    Passage(
        doc_id="failures.md#0",
        title="Failures",
        text="When an event fails, ragbus classifies the failure once. A transient failure "
        "is retried with backoff. A permanent failure goes to the dead-letter queue.",
        score=2.0,
    )
]


def _retrieved(question: str = "How does ragbus handle a failed event?") -> Envelope:
    query = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=question))
    return query.derive(
        RagEvent.DOCUMENTS_RETRIEVED, DocumentsRetrieved(question=question, passages=PASSAGES)
    )


async def test_the_generate_stage_streams_tokens_that_add_up_to_its_answer() -> None:
    emitted: list[Envelope] = []

    async def emit(event: Envelope) -> None:
        emitted.append(event)

    event = _retrieved()
    [answer] = await GenerateHandler(offline_lm(), emit=emit)(event)
    [plain] = await GenerateHandler(offline_lm())(event)
    # streaming changes nothing in the result but its time
    assert {**answer.payload, "timings_ms": {}} == {**plain.payload, "timings_ms": {}}
    assert answer.id == plain.id
    tokens = [AnswerToken.model_validate(token.payload) for token in emitted]
    assert len(tokens) > 1
    assert [token.sequence for token in tokens] == list(range(len(tokens)))
    assert "".join(token.text for token in tokens) == answer.payload["answer"]
    for token in emitted:
        assert token.type == RagEvent.ANSWER_TOKEN
        assert token.correlation_id == event.correlation_id
        assert token.causation_id == event.id
        sequence = token.payload["sequence"]
        assert token.id == uuid.uuid5(event.id, f"answer_token:{sequence}")


async def test_concurrent_streams_each_get_their_own_tokens() -> None:
    emitted: list[Envelope] = []

    async def emit(event: Envelope) -> None:
        emitted.append(event)

    handler = GenerateHandler(offline_lm(latency_ms=20), emit=emit)
    events = [_retrieved(f"How does ragbus handle failure number {n}?") for n in range(8)]
    answers = await asyncio.gather(*(handler(event) for event in events))
    for event, [answer] in zip(events, answers, strict=True):
        texts = [t.payload["text"] for t in emitted if t.causation_id == event.id]
        assert "".join(texts) == answer.payload["answer"] and len(texts) > 1


async def test_token_text_is_trimmed_like_the_answer() -> None:
    emitted: list[Envelope] = []

    async def emit(event: Envelope) -> None:
        emitted.append(event)

    tokens = TokenEmitter(_retrieved(), emit, RagEvent.ANSWER_TOKEN)
    for delta in ["  ", "\n Hello", " world ", "", "  ", "again\n\n"]:
        await tokens.add(delta)
    assert [e.payload["text"] for e in emitted] == ["Hello", " world", "   again"]
    assert tokens.text == "Hello world   again"


class _BrokenBus(MemoryBus):
    """A memory bus whose every transient publish fails (the connection is gone)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.attempts: list[Envelope] = []

    async def _offer(self, envelope: Envelope) -> None:
        self.attempts.append(envelope)
        raise ConnectionError("down")


async def test_a_failing_emit_is_the_bus_s_problem_not_the_stage_s(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every token publish fails: the bus swallows each failure, so the generate stage
    streams into the void and still answers in full."""
    caplog.set_level(logging.DEBUG, logger="ragbus.bus.memory")
    bus = _BrokenBus(dlq_path=tmp_path / "dlq.sqlite3")
    event = _retrieved()
    [streamed] = await GenerateHandler(offline_lm(), emit=emitter(bus))(event)
    [plain] = await GenerateHandler(offline_lm())(event)
    assert {**streamed.payload, "timings_ms": {}} == {**plain.payload, "timings_ms": {}}
    assert len(bus.attempts) > 1, "the stage kept streaming after the first failed publish"
    assert {token.type for token in bus.attempts} == {RagEvent.ANSWER_TOKEN}
    assert "".join(token.payload["text"] for token in bus.attempts) == plain.payload["answer"]
    assert f"transient answer_token {bus.attempts[0].id} dropped: ConnectionError" in caplog.text


async def test_a_transient_publish_lets_cancellation_through(tmp_path: Path) -> None:
    """It swallows failures, never a cancellation: a stopping stage must stop."""
    publishing = asyncio.Event()

    class HangingBus(MemoryBus):
        async def _offer(self, envelope: Envelope) -> None:
            publishing.set()
            await asyncio.Event().wait()

    bus = HangingBus(dlq_path=tmp_path / "dlq.sqlite3")
    task = asyncio.create_task(emitter(bus)(_retrieved()))
    await asyncio.wait_for(publishing.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_transient_events_reach_listeners_and_vanish_without_them(
    make_bus: BusFactory,
) -> None:
    bus = make_bus()
    await bus.connect()
    retrieved = _retrieved()
    unheard, heard, last = (
        retrieved.derive(RagEvent.ANSWER_TOKEN, AnswerToken(sequence=n, text=f"t{n}"), part=n)
        for n in range(3)
    )
    await bus.publish(unheard, transient=True)  # nobody listens: dropped, no error
    received: asyncio.Queue[InboundMessage] = asyncio.Queue()

    async def listen(message: InboundMessage) -> None:
        await received.put(message)

    bus.subscribe("listener", [RagEvent.ANSWER_TOKEN], listen, concurrency=1, ephemeral=True)
    await bus.start()
    try:
        await bus.publish(heard, transient=True)
        await bus.publish(last, transient=True)
        got = []
        async with asyncio.timeout(10):
            for _ in range(2):
                got.append(Envelope.model_validate_json((await received.get()).body))
        # in order on one queue: had the unheard token been kept, it would come first
        assert got == [heard, last]
        assert received.empty()
    finally:
        await bus.close()
    await bus.publish(last, transient=True)  # closed: still no error


@pytest.mark.rabbitmq
async def test_rabbitmq_sends_tokens_non_persistent_with_a_ttl(amqp_url: str) -> None:
    from tests.amqp import Namespace

    namespace = Namespace(amqp_url)
    bus: RabbitMQBus = await namespace.bus()
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True)
        await queue.bind(namespace.exchange, RagEvent.ANSWER_TOKEN)
        token = _retrieved().derive(
            RagEvent.ANSWER_TOKEN, AnswerToken(sequence=0, text="hi"), part=0
        )
        await bus.publish(token, transient=True)
        found: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def arrived() -> bool:
            message = await queue.get(fail=False)
            if message is not None:
                found.append(message)
            return bool(found)

        await wait_until(arrived, what="the token in the test's queue")
        [message] = found
        assert message.delivery_mode == aio_pika.DeliveryMode.NOT_PERSISTENT
        assert message.expiration == 60  # seconds: the TTL docs/events.md promises
        assert message.message_id == str(token.id)
    finally:
        await connection.close()
        await namespace.cleanup()


async def test_long_deltas_are_split_and_a_raising_emit_stops_streaming_only() -> None:
    emitted: list[Envelope] = []

    async def emit(event: Envelope) -> None:
        emitted.append(event)
        if len(emitted) == 3:
            raise RuntimeError("a broken emit")

    tokens = TokenEmitter(_retrieved(), emit, RagEvent.ANSWER_TOKEN)
    await tokens.add("x" * 45_000)  # three tokens of at most 20,000 characters
    await tokens.add(" more")
    assert [len(e.payload["text"]) for e in emitted] == [20_000, 20_000, 5_000]
    assert tokens.broken
