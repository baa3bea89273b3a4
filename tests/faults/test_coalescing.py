"""Identical concurrent questions share one LM call, and every asker gets its own answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ragbus.bus.base import DeadLetterReason
from ragbus.client import Client
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
from tests.polling import wait_until

pytestmark = pytest.mark.timeout(60)

ASKERS = 100

#: The deadline of a hurried asker, while the LM hangs: it passes while the asker waits
#: for the LM, however slowly the stages before reach it on a loaded machine.
HURRIED_S = 2.0


async def test_identical_concurrent_questions_make_one_lm_call(
    make_bus: BusFactory, bus_kind: str, tmp_path: Path, lm: FakeLMServer
) -> None:
    # every asker's event is in flight at once, while the one LM call is slow
    settings = fault_settings(tmp_path, lm, concurrency=2 * ASKERS)
    lm.set(delay_s=0.5)
    async with Client(settings, bus=make_bus(**bus_options(bus_kind)), run_pipeline=True) as client:
        answers = await asyncio.wait_for(
            asyncio.gather(*(client.ask(QUESTION, timeout=30) for _ in range(ASKERS))), 45
        )
        shared = {
            result: metric(client, "ragbus_cache_total", stage="generate", result=result)
            for result in ("miss", "coalesced", "hit")
        }

    assert lm.calls == 1, f"{lm.calls} HTTP calls to the LM for one question"
    assert shared["miss"] == 1 and shared["coalesced"] + shared["hit"] == ASKERS - 1, shared
    assert shared["coalesced"] > 0, shared  # they waited for the call in flight
    # each asker has its own query, its own answer event, in its own correlation
    assert len({a.query.id for a in answers}) == ASKERS
    assert len({a.answer.id for a in answers}) == ASKERS
    for answer in answers:
        [retrieved] = answer.progress
        assert answer.answer.correlation_id == answer.query.id
        assert retrieved.correlation_id == answer.query.id
        assert retrieved.causation_id == answer.query.id
        assert answer.answer.causation_id == retrieved.id
        assert answer.text == f"The test LM answers: {QUESTION}"


async def test_a_waiting_asker_outlives_the_deadline_of_the_call_it_waits_for(
    make_bus: BusFactory, bus_kind: str, tmp_path: Path, lm: FakeLMServer
) -> None:
    """A hurried question's call is in flight when a patient asker asks the same question;
    the hurried deadline passes: the hurried event expires, the patient one is answered.
    (The hurried question is published, not asked: an asker who gives up cancels it.)"""
    settings = fault_settings(tmp_path, lm, stage_timeout_s=10)
    bus = make_bus(**bus_options(bus_kind))
    lm.set(mode="hang")
    async with Client(settings, bus=bus, run_pipeline=True) as client:
        await publish_question(client, QUESTION, deadline_s=HURRIED_S)
        await wait_until(lambda: lm.calls == 1, what="the hurried asker's LM call")
        patient = asyncio.create_task(client.ask(QUESTION, timeout=30))
        await wait_until(
            lambda: metric(client, "ragbus_cache_total", stage="generate", result="coalesced") == 1,
            what="the patient asker to wait for the call in flight",
        )
        await wait_until(
            lambda: lm.calls == 2 or patient.done(),
            what="the patient asker to call the LM itself",
            timeout=10,
        )
        lm.set()
        answer = await asyncio.wait_for(patient, 10)
        [letter] = await dead_letters_when(bus, 1)
    assert answer.text == f"The test LM answers: {QUESTION}"
    assert (letter.stage, letter.reason) == ("generate", DeadLetterReason.EXPIRED)
    assert letter.correlation_id != str(answer.query.id)


async def test_a_waiting_asker_expires_at_its_own_deadline(
    make_bus: BusFactory, bus_kind: str, tmp_path: Path, lm: FakeLMServer
) -> None:
    """A hurried question waiting for a patient asker's call in flight is dead-lettered
    as ``expired`` when its own deadline passes, not answered late. (Published, not
    asked: an asker who gives up cancels its question instead.)"""
    settings = fault_settings(tmp_path, lm, stage_timeout_s=10)
    bus = make_bus(**bus_options(bus_kind))
    lm.set(mode="hang")
    async with Client(settings, bus=bus, run_pipeline=True) as client:
        patient = asyncio.create_task(client.ask(QUESTION, timeout=30))
        await wait_until(lambda: lm.calls == 1, what="the patient asker's LM call")
        await publish_question(client, QUESTION, deadline_s=HURRIED_S)
        [letter] = await dead_letters_when(bus, 1, timeout=10)
        assert not patient.done()  # the LM still has not answered
        lm.set()
        answer = await asyncio.wait_for(patient, 10)
        await wait_until(
            lambda: metric(client, "ragbus_processed_total", stage="generate") == 1,
            what="the patient asker's event processed",
        )
    assert (letter.stage, letter.reason) == ("generate", DeadLetterReason.EXPIRED)
    assert letter.correlation_id != str(answer.query.id)
    assert lm.calls == 1
