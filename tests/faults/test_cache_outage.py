"""A cache outage degrades to no cache: questions are answered, the errors counted."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from ragbus.bus.base import DeadLetterFilter
from ragbus.client import Client
from ragbus.pipelines.rag import STAGE_NAMES
from tests.conftest import BusFactory
from tests.faults.support import QUESTION, bus_options, fault_settings, metric
from tests.lm_server import FakeLMServer

pytestmark = pytest.mark.timeout(60)


def dead_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_questions_are_answered_while_the_cache_is_down(
    make_bus: BusFactory,
    bus_kind: str,
    tmp_path: Path,
    lm: FakeLMServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ragbus")
    settings = fault_settings(tmp_path, lm, cache_url=f"redis://127.0.0.1:{dead_port()}/0")
    bus = make_bus(**bus_options(bus_kind))
    questions = [f"{QUESTION} (case {number})" for number in range(3)]
    async with Client(settings, bus=bus, run_pipeline=True) as client:
        answers = [await client.ask(question, timeout=20) for question in questions]
        again = await client.ask(questions[0], timeout=20)  # no cache: the LM answers again
        errors = {
            stage: metric(client, "ragbus_cache_total", stage=stage, result="error")
            for stage in ("retrieve", "generate")
        }
        hits = metric(client, "ragbus_cache_total", stage="generate", result="hit")
        assert await bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter()) == []

    assert [a.answer.payload["question"] for a in answers] == questions
    assert again.text == answers[0].text
    assert lm.asked == [*questions, questions[0]]
    assert hits == 0
    assert all(count >= 4 for count in errors.values()), errors
    outage_warnings = [
        record for record in caplog.records if "going on without the cache" in record.getMessage()
    ]
    assert len(outage_warnings) == 1  # one warning, not one per operation
