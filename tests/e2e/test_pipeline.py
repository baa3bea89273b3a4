"""The whole pipeline, on every bus: questions in, answers with sources out."""

from __future__ import annotations

import asyncio

from ragbus.bus.base import DeadLetterReason
from ragbus.client import Client
from ragbus.config import Settings
from ragbus.payloads.rag import RagEvent
from tests.conftest import BusFactory
from tests.faults.support import dead_letters_when, publish_question
from tests.foreign import publish_raw


async def test_a_question_is_answered_from_the_bundled_corpus(
    make_bus: BusFactory, settings: Settings
) -> None:
    async with Client(settings, bus=make_bus(), run_pipeline=True) as client:
        answer = await client.ask("How does ragbus handle a failed event?", timeout=30)
    payload = answer.answer.payload
    assert answer.answer.type == RagEvent.ANSWER_GENERATED
    assert answer.answer.correlation_id == answer.query.id
    assert payload["answer"].strip()
    assert payload["extractive"] is True
    assert payload["model"] == "offline/extractive"
    assert any(source["doc_id"].startswith("failures.md") for source in payload["sources"])
    assert set(payload["timings_ms"]) == {"retrieve", "generate"}
    [retrieved] = answer.progress
    assert retrieved.type == RagEvent.DOCUMENTS_RETRIEVED
    assert answer.answer.causation_id == retrieved.id


async def test_concurrent_askers_each_get_their_own_answer(
    make_bus: BusFactory, settings: Settings
) -> None:
    questions = [f"What does a dead letter record? (case {number})" for number in range(30)]
    async with Client(settings, bus=make_bus(), run_pipeline=True) as client:
        answers = await asyncio.gather(*(client.ask(q, timeout=60) for q in questions))
    assert [a.answer.payload["question"] for a in answers] == questions
    assert len({a.answer.id for a in answers}) == 30


async def test_an_invalid_event_is_dead_lettered_and_the_rest_flow_on(
    make_bus: BusFactory, settings: Settings
) -> None:
    bus = make_bus()
    async with Client(settings, bus=bus, run_pipeline=True) as client:
        await publish_raw(bus, b'{"type": "query_received", "payload": {"k": 3}}', "query_received")
        await publish_raw(bus, b"this is not JSON", "query_received")
        answer = await client.ask("Which LM answers by default?", timeout=30)
        assert answer.text
        letters = await dead_letters_when(bus, 2)
    assert {letter.reason for letter in letters} == {DeadLetterReason.INVALID}
    assert {letter.stage for letter in letters} == {"retrieve"}
    assert any("payload.question" in letter.error_message for letter in letters)
    assert any(letter.raw == "this is not JSON" for letter in letters)


async def test_an_expired_question_is_dead_lettered_as_expired(
    make_bus: BusFactory, settings: Settings
) -> None:
    bus = make_bus()
    async with Client(settings, bus=bus, run_pipeline=True) as client:
        # published, not asked: an asker who gives up cancels its question instead
        await publish_question(client, "Which LM answers by default?", deadline_s=0.000001)
        letters = await dead_letters_when(bus, 1)
    assert [letter.reason for letter in letters] == [DeadLetterReason.EXPIRED]
