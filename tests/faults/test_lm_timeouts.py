"""Timeouts per operation: each stage its own, and the LM's HTTP request its own."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ragbus.client import Client
from ragbus.pipeline import StageContext
from ragbus.pipelines.rag import pipeline as rag
from ragbus.stage_build import build_stage
from tests.faults.support import QUESTION, dead_letters_when, fault_settings
from tests.lm_server import FakeLMServer

pytestmark = pytest.mark.timeout(60)


def test_a_stage_takes_its_own_time_limit(tmp_path: Path, lm: FakeLMServer) -> None:
    settings = fault_settings(
        tmp_path, lm, stage_timeout_s=30.0, stage_timeouts_s={"generate": 90.0}
    )
    timeouts = {
        spec.name: build_stage(
            spec, StageContext(pipeline=rag, stage=spec, settings=settings)
        ).timeout_s
        for spec in rag.stages.values()
    }
    assert timeouts == {"retrieve": 30.0, "generate": 90.0}


def test_stage_timeouts_are_read_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragbus.config import Settings

    monkeypatch.setenv("RAGBUS_STAGE_TIMEOUTS_S", '{"retrieve": 5, "generate": 90}')
    assert Settings(_env_file=None).stage_timeouts_s == {"retrieve": 5.0, "generate": 90.0}  # type: ignore[call-arg]


async def test_the_lm_request_times_out_before_the_stage(tmp_path: Path, lm: FakeLMServer) -> None:
    settings = fault_settings(
        tmp_path,
        lm,
        lm_timeout_s=0.5,
        stage_timeout_s=30.0,
        retry_attempts=1,
        max_attempts=1,
    )
    lm.set(mode="hang")
    async with Client(settings) as client:
        started = time.monotonic()
        await client.publish(client.event({"question": QUESTION}))
        [letter] = await dead_letters_when(client.bus, 1, timeout=20)
        elapsed = time.monotonic() - started
    # the LM client gave up after its own 0.5 s, not the stage after its 30 s
    assert elapsed < 10
    assert letter.stage == "generate"
    assert "took longer" not in letter.error_message
    assert "timeout" in f"{letter.error_type} {letter.error_message}".lower()
