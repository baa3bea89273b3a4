"""The LM client's connection pool: ``RAGBUS_LM_MAX_CONNECTIONS`` bounds the requests in
flight at the LM server, whatever the stages' concurrency; unset, the client's own pool
(100 per LM) lets them all through."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ragbus.client import Client
from ragbus.config import Settings
from ragbus.errors import ConfigurationError
from ragbus.lm import build_lm
from ragbus.pipeline import StageContext
from ragbus.pipelines.rag import pipeline as rag
from tests.faults.support import fault_settings
from tests.lm_server import FakeLMServer

pytestmark = pytest.mark.timeout(60)

QUESTIONS = 10


async def _max_in_flight(settings: Settings, lm: FakeLMServer) -> int:
    """Ask ``QUESTIONS`` different questions at once; the most chat requests the server
    had in flight together."""
    lm.set(delay_s=0.3)  # long enough for the calls to overlap at the server
    questions = [f"How does ragbus handle a failed event? (question {n})" for n in range(10)]
    async with Client(settings) as client:
        results = await client.ask_many(questions, concurrency=QUESTIONS, timeout=30)
    assert [result.error for result in results] == [""] * QUESTIONS
    assert all(result.answer is not None for result in results)
    assert lm.calls == QUESTIONS
    return lm.max_in_flight


def _settings(tmp_path: Path, lm: FakeLMServer, **overrides: object) -> Settings:
    values: dict[str, object] = {"lm_concurrency_adaptive": False, "lm_timeout_s": 20.0}
    return fault_settings(tmp_path, lm, **(values | overrides))


async def test_the_pool_bounds_the_requests_in_flight(tmp_path: Path, lm: FakeLMServer) -> None:
    in_flight = await _max_in_flight(_settings(tmp_path, lm, lm_max_connections=2), lm)
    assert in_flight == 2


async def test_without_a_pool_size_the_requests_overlap(tmp_path: Path, lm: FakeLMServer) -> None:
    assert await _max_in_flight(_settings(tmp_path, lm), lm) > 2


async def test_the_pool_keeps_the_key_url_and_timeout(tmp_path: Path, lm: FakeLMServer) -> None:
    # the request's own time limit still applies through the pooled client
    lm.set(mode="hang")
    pooled = build_lm(_settings(tmp_path, lm, lm_max_connections=2, lm_timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(Exception, match=r"(?i)timeout|timed out"):
        await pooled.acall("Hello?")
    assert time.monotonic() - started < 5  # its 0.5 s, not the 20 s of the other tests
    lm.set()
    assert await pooled.acall("Hello?")
    assert lm.calls == 2  # both went to the stand-in's URL, with the key
    assert lm.authorization == "Bearer test"


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGBUS_LM_MAX_CONNECTIONS", "2")
    assert Settings(_env_file=None).lm_max_connections == 2  # type: ignore[call-arg]
    monkeypatch.setenv("RAGBUS_LM_MAX_CONNECTIONS", "0")
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_the_offline_lm_has_no_pool_to_size() -> None:
    settings = Settings(_env_file=None, lm_max_connections=2)  # type: ignore[call-arg]
    assert build_lm(settings).model == "offline/extractive"


@pytest.mark.parametrize("model", ["cohere/command-r", "azure/gpt-4o"])
def test_a_model_only_litellm_serves_is_refused(
    tmp_path: Path, lm: FakeLMServer, model: str
) -> None:
    settings = _settings(tmp_path, lm, lm_model=model, lm_max_connections=2)
    with pytest.raises(ConfigurationError, match="RAGBUS_LM_MAX_CONNECTIONS"):
        build_lm(settings)


@pytest.mark.parametrize("mode", ["rate_limit", "error", "bad_request"])
async def test_the_pooled_client_fails_as_the_default_one(
    tmp_path: Path, lm: FakeLMServer, mode: str
) -> None:
    # the guards classify LM failures by their DSPy error class (429, 5xx, 4xx)
    lm.set(mode=mode)
    failures = []
    for pool in (None, 2):
        with pytest.raises(Exception) as failure:
            await build_lm(_settings(tmp_path, lm, lm_max_connections=pool)).acall("Hello?")
        failures.append(type(failure.value))
    assert failures[0] is failures[1]
    assert lm.failures == 2


def test_the_pooled_lm_reports_the_models_capabilities(tmp_path: Path, lm: FakeLMServer) -> None:
    default, pooled = (
        build_lm(_settings(tmp_path, lm, lm_max_connections=pool)) for pool in (None, 2)
    )
    for hint in ("supports_function_calling", "supports_reasoning", "supports_response_schema"):
        assert getattr(pooled, hint) == getattr(default, hint)
    assert pooled.supported_params == default.supported_params


async def test_the_pooled_lm_streams_an_answer(tmp_path: Path, lm: FakeLMServer) -> None:
    # the generate stage streams its answer's tokens through the same client
    import dspy
    from dspy.streaming import StreamListener, StreamResponse

    pooled = build_lm(_settings(tmp_path, lm, lm_max_connections=2))
    program = dspy.streamify(
        dspy.Predict("question -> answer"),
        stream_listeners=[StreamListener(signature_field_name="answer")],
    )
    pieces: list[str] = []
    with dspy.context(lm=pooled):
        async for item in program(question="What keeps failed events?"):
            if isinstance(item, StreamResponse):
                pieces.append(item.chunk)
            elif isinstance(item, dspy.Prediction):
                answer = item.answer
    assert pieces and "".join(pieces).strip() == answer.strip()
    assert "What keeps failed events?" in answer


async def test_the_fallback_lm_has_a_pool_of_the_same_size(
    tmp_path: Path, lm: FakeLMServer
) -> None:
    settings = _settings(
        tmp_path, lm, lm_max_connections=2, lm_fallback_model="openai/test-fallback"
    )
    [spec] = [spec for spec in rag.stages.values() if spec.name == "generate"]
    generate = spec.build(StageContext(pipeline=rag, stage=spec, settings=settings))
    fallback = generate.fallback  # type: ignore[attr-defined]
    assert fallback is not None and fallback.lm.model == "openai/test-fallback"
    lm.set(delay_s=0.3)
    await asyncio.gather(*(fallback.lm.acall(f"Hello {n}?") for n in range(QUESTIONS)))
    assert lm.calls == QUESTIONS
    assert lm.max_in_flight == 2


def test_copies_of_the_pooled_lm_share_its_pool(tmp_path: Path, lm: FakeLMServer) -> None:
    # DSPy's optimizers deep-copy the modules that hold an LM
    import copy

    import dspy

    pooled = build_lm(_settings(tmp_path, lm, lm_max_connections=2))
    predict = dspy.Predict("question -> answer")
    predict.lm = pooled
    copied = copy.deepcopy(predict)
    assert copied.lm is not pooled and copied.lm.engine is pooled.engine
    assert pooled.copy(temperature=0.5).engine is pooled.engine
