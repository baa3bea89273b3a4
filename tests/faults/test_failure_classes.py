"""Permanent failures go to the DLQ at once; transient ones after ``max_attempts``
deliveries, each redelivery waiting its delay; a ``Retry-After`` is honoured."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragbus.bus.base import Bus, DeadLetterFilter, DeadLetterReason
from ragbus.bus.rabbitmq import RabbitMQBus
from ragbus.bus.rabbitmq.topology import tier_for
from ragbus.client import Client
from ragbus.events import Envelope
from ragbus.pipelines.rag import STAGE_NAMES
from tests.conftest import BusFactory
from tests.faults.support import (
    DELAYS,
    QUESTION,
    bus_options,
    dead_letters_when,
    fault_settings,
    metric,
)
from tests.lm_server import FakeLMServer

pytestmark = pytest.mark.timeout(60)


def record_redeliveries(bus: Bus) -> list[tuple[Envelope, float]]:
    """Record each delayed redelivery the runtime asks ``bus`` for: (event, delay)."""
    recorded: list[tuple[Envelope, float]] = []
    publish = bus.publish

    async def recording(
        envelope: Envelope,
        *,
        stage: str | None = None,
        delay: float | None = None,
        transient: bool = False,
    ) -> None:
        if delay is not None:
            recorded.append((envelope, delay))
        await publish(envelope, stage=stage, delay=delay, transient=transient)

    bus.publish = recording  # type: ignore[method-assign]
    return recorded


async def test_a_bad_request_is_dead_lettered_at_once(
    make_bus: BusFactory, bus_kind: str, tmp_path: Path, lm: FakeLMServer
) -> None:
    settings = fault_settings(tmp_path, lm, breaker_minimum_calls=1, breaker_window_size=1)
    bus = make_bus(**bus_options(bus_kind))
    redeliveries = record_redeliveries(bus)
    bad = f"{QUESTION} (rejected)"
    async with Client(settings, bus=bus, run_pipeline=True) as client:
        lm.set(mode="bad_request")  # HTTP 400: DSPy raises LMInvalidRequestError
        query = await client.publish({"question": bad})
        [letter] = await dead_letters_when(bus, 1)
        lm.set()
        # the LM is healthy for the next question: a 400 opened no breaker
        answer = await client.ask(QUESTION, timeout=20)
        assert metric(client, "ragbus_retried_total", stage="generate", kind="in_process") == 0
        assert metric(client, "ragbus_breaker_state", dependency="lm") == 0
        assert await bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter()) == [letter]

    assert (letter.stage, letter.reason, letter.attempts) == ("generate", "failed", 1)
    assert letter.error_type == "LMInvalidRequestError"
    assert letter.correlation_id == str(query.id)
    assert letter.event_type == "documents_retrieved"
    assert lm.calls_for(bad) == 1  # never retried
    assert redeliveries == []
    assert answer.text == f"The test LM answers: {QUESTION}"


async def test_a_transient_failure_is_dead_lettered_after_max_attempts(
    make_bus: BusFactory, bus_kind: str, tmp_path: Path, lm: FakeLMServer
) -> None:
    settings = fault_settings(
        tmp_path,
        lm,
        max_attempts=3,
        retry_attempts=2,
        breaker_minimum_calls=1000,  # the breaker stays closed: this is about retries
        breaker_window_size=1000,
    )
    bus = make_bus(**bus_options(bus_kind))
    redeliveries = record_redeliveries(bus)
    questions = [f"{QUESTION} (case {number})" for number in range(4)]
    lm.set(mode="error")  # HTTP 500 for ever
    async with Client(settings, bus=bus, run_pipeline=True) as client:
        queries = [await client.publish({"question": question}) for question in questions]
        letters = await dead_letters_when(bus, len(questions), timeout=20)
        assert metric(client, "ragbus_retried_total", stage="generate", kind="redelivery") == 8
        assert metric(client, "ragbus_retried_total", stage="generate", kind="in_process") == 12

    assert {letter.correlation_id for letter in letters} == {str(q.id) for q in queries}
    for letter in letters:
        assert (letter.stage, letter.reason) == ("generate", DeadLetterReason.FAILED)
        assert (letter.attempts, letter.error_type) == (3, "LMServerError")
        assert letter.envelope is not None and letter.envelope["attempt"] == 3
    for question in questions:  # 3 deliveries of 2 calls each, the bus waiting between
        times = [at for at, asked in zip(lm.call_times, lm.asked, strict=True) if asked == question]
        assert len(times) == 6
        assert times[2] - times[1] >= 0.75 * DELAYS[0]
        assert times[4] - times[3] >= 0.75 * DELAYS[1]
    # each redelivery waited its attempt's delay, and on RabbitMQ that delay is the
    # delay tier the runtime meant (not rounded up to the next one)
    assert sorted(envelope.attempt for envelope, _ in redeliveries) == [2] * 4 + [3] * 4
    for envelope, delay in redeliveries:
        meant = DELAYS[envelope.attempt - 2]
        assert 0.75 * meant <= delay <= meant, (envelope.attempt, delay)
        if isinstance(bus, RabbitMQBus):
            assert tier_for(delay, bus.topology.delay_tiers) == meant, (envelope.attempt, delay)


async def test_a_short_retry_after_is_waited_in_process(
    make_bus: BusFactory, bus_kind: str, tmp_path: Path, lm: FakeLMServer
) -> None:
    settings = fault_settings(tmp_path, lm, retry_max_s=1.0)
    bus = make_bus(**bus_options(bus_kind))
    redeliveries = record_redeliveries(bus)
    lm.set(mode="rate_limit", retry_after=0.3, times=1)  # one 429, then answers
    async with Client(settings, bus=bus, run_pipeline=True) as client:
        answer = await client.ask(QUESTION, timeout=20)
        assert metric(client, "ragbus_retried_total", stage="generate", kind="in_process") == 1
    assert answer.text == f"The test LM answers: {QUESTION}"
    assert redeliveries == []
    first, second = lm.call_times
    assert second - first >= 0.3


async def test_a_long_retry_after_is_waited_by_the_redelivery(
    make_bus: BusFactory, bus_kind: str, tmp_path: Path, lm: FakeLMServer
) -> None:
    """A ``Retry-After`` longer than ``retry_max_s`` frees the worker: the event is
    redelivered after it instead."""
    settings = fault_settings(tmp_path, lm, retry_max_s=0.1)
    bus = make_bus(**bus_options(bus_kind))
    redeliveries = record_redeliveries(bus)
    lm.set(mode="rate_limit", retry_after=0.4, times=1)
    async with Client(settings, bus=bus, run_pipeline=True) as client:
        answer = await client.ask(QUESTION, timeout=20)
        assert metric(client, "ragbus_retried_total", stage="generate", kind="in_process") == 0
    assert answer.text == f"The test LM answers: {QUESTION}"
    [(retry, delay)] = redeliveries
    assert (retry.attempt, delay) == (2, 0.4)
    first, second = lm.call_times
    assert second - first >= 0.4
