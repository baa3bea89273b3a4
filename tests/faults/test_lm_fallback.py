"""RAGBUS_LM_FALLBACK_MODEL: while the LM's breaker is open, the fallback answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ragbus.bus.base import DeadLetterFilter
from ragbus.client import Client
from ragbus.pipelines.rag import STAGE_NAMES
from ragbus.runtime.circuit import BreakerState
from tests.conftest import BusFactory
from tests.faults.support import QUESTION, bus_options, fault_settings, metric
from tests.lm_server import FakeLMServer
from tests.polling import wait_until

pytestmark = pytest.mark.timeout(60)

QUERIES = 40


async def test_the_fallback_answers_while_the_breaker_is_open(
    make_bus: BusFactory, bus_kind: str, tmp_path: Path, lm: FakeLMServer
) -> None:
    settings = fault_settings(
        tmp_path, lm, lm_fallback_model="offline/extractive", breaker_open_s=30.0
    )
    lm.set(mode="error")  # the primary is down from the start
    async with Client(settings, bus=make_bus(**bus_options(bus_kind))) as client:
        answers = await asyncio.gather(
            *(client.ask(f"{QUESTION} (case {n})", timeout=30) for n in range(QUERIES))
        )
        state = metric(client, "ragbus_breaker_state", dependency="lm")
        dead = await client.bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter())
        calls_while_open = lm.calls
        again = await client.ask(f"{QUESTION} (case 0)", timeout=30)

    assert state == BreakerState.OPEN
    payloads = [answer.answer.payload for answer in answers]
    assert all(p["fallback"] and p["model"] == "offline/extractive" for p in payloads)
    assert all(p["answer"] for p in payloads)
    assert dead == []
    # the primary was tried until its breaker opened, and not again while open
    assert 0 < calls_while_open < QUERIES
    assert lm.calls == calls_while_open
    # a degraded answer is not cached under the primary's key: asked again, the
    # fallback answers again rather than the cache
    assert again.answer.payload["fallback"]


async def test_answers_of_the_primary_are_not_marked(tmp_path: Path, lm: FakeLMServer) -> None:
    settings = fault_settings(tmp_path, lm, lm_fallback_model="offline/extractive")
    async with Client(settings) as client:
        answer = await client.ask(QUESTION, timeout=30)
    assert answer.answer.payload["fallback"] is False
    assert answer.answer.payload["model"] == "openai/test-model"


async def test_the_primary_answers_again_once_it_is_back(tmp_path: Path, lm: FakeLMServer) -> None:
    settings = fault_settings(tmp_path, lm, lm_fallback_model="offline/extractive")
    lm.set(mode="error")
    async with Client(settings) as client:
        first = await asyncio.gather(
            *(client.ask(f"{QUESTION} (down {n})", timeout=30) for n in range(10))
        )
        lm.set()  # the LM is back; the breaker probes it after its open wait (0.5 s)
        later: list[bool] = []

        async def primary_answers() -> bool:
            answer = await client.ask(f"{QUESTION} (up {len(later)})", timeout=30)
            later.append(answer.answer.payload["fallback"])
            return not later[-1]

        await wait_until(primary_answers, what="an answer of the primary", timeout=20)
    assert any(a.answer.payload["fallback"] for a in first)
    assert later[-1] is False
