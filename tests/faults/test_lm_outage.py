"""An LM outage in the middle of a run: the breaker pauses generate, nothing is lost."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from ragbus.bus.base import DeadLetterFilter
from ragbus.client import Answer, Client
from ragbus.pipelines.rag import STAGE_NAMES
from ragbus.runtime.circuit import BreakerState
from tests.conftest import BusFactory
from tests.faults.support import QUESTION, bus_options, fault_settings, metric
from tests.lm_server import FakeLMServer
from tests.polling import wait_until

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

QUERIES = 200
#: How long the LM stays down: long enough for hanging calls to time out and open the
#: breaker inside the outage.
OUTAGE_S = 4.0
#: The time limit of one LM call: a hanging call fails (transient) after it; far above
#: what an answering call takes on a loaded machine.
STAGE_TIMEOUT_S = 2.0
#: The first answer after the LM's return comes within this many seconds (the breaker
#: half-opens after ``breaker_open_s``; no redelivery delay holds the stage back).
RESUME_S = 3.0
#: The LM's latency when it is up.
LATENCY_S = 0.02


def breaker_state(client: Client) -> float:
    return metric(client, "ragbus_breaker_state", dependency="lm")


@pytest.mark.parametrize("outage", ["error", "hang"])
async def test_lm_outage_opens_the_breaker_and_every_query_is_answered(
    make_bus: BusFactory,
    bus_kind: str,
    tmp_path: Path,
    lm: FakeLMServer,
    outage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ragbus")
    settings = fault_settings(
        tmp_path,
        lm,
        concurrency=8,
        stage_timeout_s=STAGE_TIMEOUT_S,
        max_attempts=5,
    )
    lm.set(delay_s=LATENCY_S)
    bus = make_bus(**bus_options(bus_kind))
    loop = asyncio.get_running_loop()
    answered_at: dict[int, float] = {}

    async with Client(settings, bus=bus, run_pipeline=True) as client:

        async def ask(number: int) -> Answer:
            answer = await client.ask(f"{QUESTION} (case {number})", timeout=60)
            answered_at[number] = loop.time()
            return answer

        tasks = [asyncio.create_task(ask(number)) for number in range(QUERIES)]
        try:
            await wait_until(
                lambda: len(answered_at) >= 30, what="30 answers before the outage", timeout=20
            )
            lm.set(mode=outage)
            outage_started = loop.time()
            calls_before = lm.calls
            await wait_until(
                lambda: breaker_state(client) == BreakerState.OPEN,
                what="the LM breaker to open",
                timeout=10,
            )
            assert len(answered_at) < QUERIES  # the outage hit the run in its middle
            # the outage lasts its full time, whatever the breaker does meanwhile
            await asyncio.sleep(max(0.0, outage_started + OUTAGE_S - loop.time()))
            calls_in_outage = lm.calls - calls_before
            lm.set(delay_s=LATENCY_S)
            recovered_at = loop.time()
            answers = await asyncio.wait_for(asyncio.gather(*tasks), timeout=45)
        finally:
            for task in tasks:
                task.cancel()
        assert await bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter()) == []
        assert metric(client, "ragbus_dead_lettered_total", stage="generate", reason="failed") == 0
        assert metric(client, "ragbus_failed_total", stage="generate", failure_class="breaker_open")
        assert breaker_state(client) == BreakerState.CLOSED

    # every asker got the answer to its own question
    assert len(answers) == QUERIES
    assert [a.answer.payload["question"] for a in answers] == [
        f"{QUESTION} (case {number})" for number in range(QUERIES)
    ]
    assert all(a.answer.correlation_id == a.query.id for a in answers)
    assert all(a.text.startswith("The test LM answers:") for a in answers)
    # consumption resumed soon after the LM's return
    first_after = min(at for at in answered_at.values() if at >= recovered_at)
    resumed_in = first_after - recovered_at
    assert resumed_in < RESUME_S, f"first answer {resumed_in:.2f}s after the LM came back"
    # the breaker, not the retries, took the outage: the LM was spared most calls
    assert calls_in_outage < 60, f"{calls_in_outage} LM calls during the outage"
    messages = [record.getMessage() for record in caplog.records]
    assert "breaker lm: CLOSED -> OPEN" in messages
    assert "breaker lm: HALF_OPEN -> CLOSED" in messages
    print(  # shown with -s: how the run went
        f"{bus_kind}/{outage}: resumed {resumed_in:.3f}s after recovery, "
        f"{calls_in_outage} LM calls in the {OUTAGE_S}s outage, {lm.calls} in all"
    )
