"""Events whose deadline passed are dead-lettered as ``expired``; the LM is not called."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ragbus.bus.base import DeadLetterReason
from ragbus.client import Client
from ragbus.events import new_event, utc_now
from ragbus.payloads.rag import DocumentsRetrieved, Passage, QueryReceived, RagEvent
from tests.conftest import BusFactory
from tests.faults.support import (
    QUESTION,
    bus_options,
    dead_letters_when,
    fault_settings,
    metric,
    publish_question,
)
from tests.lm_server import FakeLMServer

pytestmark = pytest.mark.timeout(60)


async def test_expired_events_are_dead_lettered_without_calling_the_lm(
    make_bus: BusFactory, bus_kind: str, tmp_path: Path, lm: FakeLMServer
) -> None:
    settings = fault_settings(tmp_path, lm)
    bus = make_bus(**bus_options(bus_kind))
    passed = utc_now() - timedelta(seconds=1)
    late_query = new_event(
        RagEvent.QUERY_RECEIVED, QueryReceived(question=f"{QUESTION} (late)"), deadline=passed
    )
    # passages and all: only the deadline keeps the generate stage from asking the LM
    late_passages = new_event(
        RagEvent.DOCUMENTS_RETRIEVED,
        DocumentsRetrieved(
            question=f"{QUESTION} (late, with passages)",
            passages=[Passage(doc_id="failures.md#0", text="Failed events are retried.", score=1)],
        ),
        deadline=passed,
    )
    async with Client(settings, bus=bus, run_pipeline=True) as client:
        await client.publish(late_query)
        await client.publish(late_passages)
        letters = await dead_letters_when(bus, 2)
        assert metric(client, "ragbus_processed_total", stage="generate") == 0
        answer = await client.ask(QUESTION, timeout=20)  # the LM is there for the others
        for stage in ("retrieve", "generate"):
            assert metric(client, "ragbus_dead_lettered_total", stage=stage, reason="expired") == 1

    assert {(letter.stage, letter.event_id) for letter in letters} == {
        ("retrieve", str(late_query.id)),
        ("generate", str(late_passages.id)),
    }
    for letter in letters:
        assert (letter.reason, letter.error_type, letter.attempts) == (
            DeadLetterReason.EXPIRED,
            "EventExpired",
            1,
        )
    assert lm.asked == [QUESTION]
    assert answer.text == f"The test LM answers: {QUESTION}"


async def test_a_deadline_passing_during_the_lm_call_expires_the_event(
    make_bus: BusFactory, bus_kind: str, tmp_path: Path, lm: FakeLMServer
) -> None:
    """The call is cancelled at the deadline, and not retried: retrying is useless now.
    (The question is published, not asked: an asker who gives up cancels its question.)"""
    settings = fault_settings(tmp_path, lm, stage_timeout_s=10)
    bus = make_bus(**bus_options(bus_kind))
    lm.set(mode="hang")  # the deadline passes while the LM call is in flight
    async with Client(settings, bus=bus, run_pipeline=True) as client:
        await publish_question(client, QUESTION, deadline_s=2.0)
        [letter] = await dead_letters_when(bus, 1)
        assert metric(client, "ragbus_retried_total", stage="generate", kind="in_process") == 0
        assert metric(client, "ragbus_breaker_state", dependency="lm") == 0
    assert (letter.stage, letter.reason, letter.attempts) == ("generate", "expired", 1)
    assert lm.calls == 1
