"""A DSPy module as a stage in one call: fields mapped, typed outputs validated, one field
streamed, a saved program loaded, and the fingerprint following all of it."""

from __future__ import annotations

from pathlib import Path

import dspy
import pytest
from pydantic import BaseModel, SecretStr

from ragbus.config import Settings
from ragbus.dspy_stages import dspy_stage
from ragbus.errors import ConfigurationError
from ragbus.handlers.generate import AnswerQuestion
from ragbus.pipeline import Pipeline, StageContext
from ragbus.pipelines.rag import pipeline as rag
from ragbus.stage_build import build_stage
from ragbus.streaming import StreamToken
from ragbus.testing import PipelineHarness
from tests.lm_server import FakeLMServer

PASSAGES = [
    "Stages consume events from their queues.",
    "Dead letters keep the events that failed, with their reason.",
]


class Asked(BaseModel):
    question: str
    passages: list[str]


class Answered(BaseModel):
    question: str
    answer: str
    reasoning: str = ""
    timings_ms: dict[str, float] = {}


class Scored(BaseModel):
    question: str
    score: int


def qa_pipeline(module: dspy.Module | None = None, **options: object) -> Pipeline:
    pipeline = Pipeline("qa")
    pipeline.event("asked", Asked)
    pipeline.event("answered", Answered)
    pipeline.event("answer_piece", StreamToken, transient=True)
    dspy_stage(
        pipeline,
        module or dspy.ChainOfThought("context: list[str], question -> answer"),
        name="answer",
        consumes="asked",
        produces="answered",
        inputs={"context": "passages"},
        stream="answer",
        tokens="answer_piece",
        **options,  # type: ignore[arg-type]
    )
    return pipeline


async def test_payload_fields_feed_the_module_and_its_outputs_become_the_payload(
    tmp_path: Path,
) -> None:
    pipeline = qa_pipeline()
    async with PipelineHarness(pipeline, directory=tmp_path) as harness:
        sent = await harness.publish(
            {"question": "What keeps the events that failed?", "passages": PASSAGES}
        )
        result = await harness.result(sent)
        tokens = [e for e in harness.events(sent) if e.type == "answer_piece"]
    answer = result.payload["answer"]
    assert "Dead letters keep the events that failed" in answer
    assert result.payload["question"] == "What keeps the events that failed?"  # passed through
    assert "extractive" in result.payload["reasoning"]
    assert set(result.payload["timings_ms"]) == {"answer"}
    ordered = sorted(tokens, key=lambda e: e.payload["sequence"])
    assert len(ordered) > 1 and "".join(e.payload["text"] for e in ordered) == answer


async def test_outputs_that_do_not_fit_the_payload_are_dead_lettered_with_the_reason(
    tmp_path: Path,
) -> None:
    pipeline = Pipeline("scores")
    pipeline.event("asked", Asked)
    pipeline.event("scored", Scored)
    dspy_stage(
        pipeline,
        dspy.Predict("context: list[str], question -> score"),
        name="score",
        consumes="asked",
        produces="scored",
        inputs={"context": "passages"},
    )
    async with PipelineHarness(pipeline, directory=tmp_path) as harness:
        await harness.publish({"question": "What keeps failed events?", "passages": PASSAGES})
        (letter,) = await harness.dead_letters()
    assert letter.reason.value == "failed" and letter.stage == "score"
    assert "the program's outputs do not fit Scored: score:" in letter.error_message


def test_a_module_input_without_a_payload_field_is_refused_at_declaration() -> None:
    pipeline = Pipeline("bad")
    pipeline.event("asked", Asked)
    pipeline.event("answered", Answered)
    with pytest.raises(ConfigurationError, match=r"inputs \['context'\] are not fields of Asked"):
        dspy_stage(
            pipeline,
            dspy.Predict("context, question -> answer"),
            name="answer",
            consumes="asked",
            produces="answered",
        )


def fingerprint(pipeline: Pipeline, name: str, settings: Settings) -> str:
    spec = pipeline.stages[name]
    return build_stage(
        spec, StageContext(pipeline=pipeline, stage=spec, settings=settings)
    ).fingerprint


def test_the_fingerprint_covers_the_program_and_the_model(
    tmp_path: Path, settings: Settings
) -> None:
    compiled = dspy.ChainOfThought("context: list[str], question -> answer")
    compiled.predict.demos = [
        dspy.Example(context=["x"], question="q?", reasoning="because", answer="x")
    ]
    program = tmp_path / "program.json"
    compiled.save(str(program))
    plain = fingerprint(qa_pipeline(), "answer", settings)
    assert fingerprint(qa_pipeline(), "answer", settings) == plain  # stable
    assert fingerprint(qa_pipeline(program=program), "answer", settings) != plain
    other_model = settings.model_copy(update={"lm_latency_ms": 5.0})
    assert fingerprint(qa_pipeline(), "answer", other_model) == plain  # not a model setting
    assert (
        fingerprint(
            qa_pipeline(),
            "answer",
            settings.model_copy(
                update={"lm_model": "openai/other", "lm_api_base": "http://127.0.0.1:9/v1"}
            ),
        )
        != plain
    )


async def test_a_saved_program_changes_the_rag_fingerprint_and_answers(
    tmp_path: Path, settings: Settings, lm: FakeLMServer
) -> None:
    compiled = dspy.ChainOfThought(AnswerQuestion)
    compiled.predict.demos = [
        dspy.Example(
            context=["Retries happen in process first."],
            question="How are failures retried?",
            history=dspy.History(messages=[]),
            reasoning="The passage says so.",
            answer="In process first.",
        )
    ]
    program = tmp_path / "program.json"
    compiled.save(str(program))
    served = settings.model_copy(
        update={
            "lm_model": "openai/test-model",
            "lm_api_base": lm.api_base,
            "lm_api_key": SecretStr("test"),
            "cache_enabled": False,
        }
    )
    question = {"question": "How does ragbus handle a failed event?"}
    async with PipelineHarness(rag, settings=served, directory=tmp_path / "a") as harness:
        plain = await harness.send(question)
    with_program = served.model_copy(update={"program": program})
    async with PipelineHarness(rag, settings=with_program, directory=tmp_path / "b") as harness:
        compiled_answer = await harness.send(question)
    assert plain.payload["answer"].startswith("The test LM answers:")
    assert "(after 1 examples)" in compiled_answer.payload["answer"]
    assert "(after" not in plain.payload["answer"]
    assert fingerprint(rag, "generate", served) != fingerprint(rag, "generate", with_program)
