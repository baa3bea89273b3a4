"""Pipelines as values: declaring event types, stages and sinks; loading apps; building
stages of every shape. No I/O."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from ragbus.apps import load_app
from ragbus.config import Settings
from ragbus.errors import ConfigurationError, PermanentError
from ragbus.events import Envelope, InvalidEvent
from ragbus.pipeline import Pipeline, StageContext
from ragbus.pipelines.analyzer import pipeline as analyzer
from ragbus.pipelines.rag import pipeline as rag
from ragbus.stage_build import build_stage
from ragbus.streaming import StreamToken


class TextIn(BaseModel):
    text: str


class Cleaned(BaseModel):
    text: str


class Counted(BaseModel):
    words: int


def toy() -> Pipeline:
    pipeline = Pipeline("toy")
    pipeline.event("text_in", TextIn, examples=[{"text": "a  b"}])
    pipeline.event("text_cleaned", Cleaned)
    pipeline.event("words_counted", Counted)
    pipeline.event("clean_token", StreamToken, transient=True)

    @pipeline.stage(consumes="text_in", produces="text_cleaned")
    async def clean(text: TextIn) -> Cleaned:
        return Cleaned(text=" ".join(text.text.split()))

    @pipeline.stage("count", consumes="text_cleaned", produces="words_counted")
    async def count_words(event: Envelope) -> list[Envelope]:
        words = len(event.payload_as(Cleaned).text.split())
        return [event.derive("words_counted", Counted(words=words))]

    return pipeline


def built(pipeline: Pipeline, name: str, settings: Settings) -> object:
    spec = pipeline.stages[name]
    return build_stage(spec, StageContext(pipeline=pipeline, stage=spec, settings=settings))


def test_a_pipeline_knows_its_entry_and_final_events() -> None:
    pipeline = toy()
    assert pipeline.stage_names == ("clean", "count")
    assert pipeline.entry_events == ("text_in",)
    assert pipeline.final_events == ("words_counted",)
    assert pipeline.transient_events == ("clean_token",)
    assert rag.entry_events == ("query_received",)
    assert rag.final_events == ("answer_generated",)
    assert analyzer.entry_events == ("text_received",)


def test_two_pipelines_keep_their_event_types_apart() -> None:
    pipeline = toy()
    assert "text_in" in pipeline.events and "text_in" not in rag.events
    assert "query_received" not in pipeline.events
    with pytest.raises(InvalidEvent, match="unknown event type 'text_in'"):
        rag.events.decode(b'{"type": "text_in", "payload": {"text": "x"}}')
    event = pipeline.events.decode(b'{"type": "text_in", "payload": {"text": "x"}}')
    assert event.payload == {"text": "x"} and event.version == 1


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda p: p.stage(consumes="nope", produces="text_cleaned"), "does not register"),
        (lambda p: p.stage(consumes="clean_token", produces="text_cleaned"), "is transient"),
        (lambda p: p.stage("Bad Name", consumes="text_in"), "invalid stage name"),
        (lambda p: p.stage("clean", consumes="text_in"), "already has a stage"),
        (lambda p: p.stage(consumes="text_in", streams="text_cleaned"), "must be transient"),
    ],
    ids=["unregistered", "transient-input", "bad-name", "duplicate", "streams-not-transient"],
)
def test_a_wrong_declaration_is_refused_where_it_is_made(declare: object, message: str) -> None:
    pipeline = toy()

    async def handler(event: Envelope) -> list[Envelope]:
        return []

    with pytest.raises(ValueError, match=message):
        declare(pipeline)(handler)  # type: ignore[operator]


def test_an_event_type_means_one_thing() -> None:
    pipeline = toy()
    pipeline.event("text_in", TextIn)  # the same again is fine
    with pytest.raises(ValueError, match="already registered"):
        pipeline.event("text_in", Cleaned)
    with pytest.raises(ValueError, match="invalid event type name"):
        pipeline.event("bad#type", TextIn)


def test_newer_versions_than_known_are_refused_and_missing_versions_filled() -> None:
    pipeline = Pipeline("versions")
    pipeline.event("thing", TextIn, version=2)
    assert pipeline.events.decode(b'{"type": "thing", "payload": {"text": "x"}}').version == 2
    with pytest.raises(InvalidEvent, match="version 3 is newer"):
        pipeline.events.decode(b'{"type": "thing", "version": 3, "payload": {"text": "x"}}')


async def test_payload_and_envelope_handlers_both_run(settings: Settings) -> None:
    pipeline = toy()
    clean = built(pipeline, "clean", settings)
    count = built(pipeline, "count", settings)
    sent = pipeline.events.new("text_in", {"text": " a   b  c "})
    (cleaned,) = await clean.handler(sent)  # type: ignore[attr-defined]
    assert cleaned.type == "text_cleaned" and cleaned.payload == {"text": "a b c"}
    assert cleaned.correlation_id == sent.id and cleaned.causation_id == sent.id
    (counted,) = await count.handler(cleaned)  # type: ignore[attr-defined]
    assert counted.payload == {"words": 3}


async def test_a_payload_handler_returning_another_model_fails_permanently(
    settings: Settings,
) -> None:
    pipeline = Pipeline("wrong")
    pipeline.event("text_in", TextIn)
    pipeline.event("text_cleaned", Cleaned)

    @pipeline.stage(consumes="text_in", produces="text_cleaned")
    async def clean(text: TextIn) -> Counted:
        return Counted(words=1)

    stage = built(pipeline, "clean", settings)
    with pytest.raises(PermanentError, match="none of its produced types"):
        await stage.handler(pipeline.events.new("text_in", {"text": "x"}))  # type: ignore[attr-defined]


def test_a_factory_is_called_only_when_its_stage_is_built(settings: Settings) -> None:
    pipeline = Pipeline("lazy")
    pipeline.event("a", TextIn)
    pipeline.event("b", Cleaned)
    calls: list[str] = []

    @pipeline.stage(consumes="a", produces="b", concurrency=3, timeout_s=7, cacheable=True)
    def expensive(context: StageContext) -> object:
        calls.append(context.stage.name)

        async def handle(text: TextIn) -> Cleaned:
            return Cleaned(text=text.text)

        return handle

    assert calls == []
    stage = built(pipeline, "expensive", settings)
    assert calls == ["expensive"]
    assert (stage.concurrency, stage.timeout_s, stage.cacheable) == (3, 7, True)  # type: ignore[attr-defined]
    assert stage.max_attempts == settings.max_attempts  # type: ignore[attr-defined]


def test_variants_are_copies(settings: Settings) -> None:
    wrapped = rag.wrap_stage("retrieve", lambda handler: handler)
    faster = rag.with_stage("generate", concurrency=64)
    assert rag.stages["generate"].concurrency is None
    assert faster.stages["generate"].concurrency == 64
    assert wrapped.stages["retrieve"] is not rag.stages["retrieve"]
    assert wrapped.stages["generate"] is rag.stages["generate"]
    with pytest.raises(ValueError, match="no stage 'nope'"):
        rag.with_stage("nope", concurrency=1)


def test_select_names_the_known_stages_when_one_is_unknown() -> None:
    assert [spec.name for spec in rag.select(["generate"])] == ["generate"]
    assert [spec.name for spec in rag.select(None)] == ["retrieve", "generate"]
    with pytest.raises(ValueError, match="unknown stage nope in pipeline 'rag'; choose from"):
        rag.select(["nope"])


def test_apps_load_by_short_name_or_module_attribute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_app("rag") is rag
    assert load_app("analyzer") is analyzer
    (tmp_path / "my_app.py").write_text(
        textwrap.dedent(
            """
            from ragbus import Pipeline
            pipeline = Pipeline("mine")
            def make():
                return Pipeline("made")
            not_a_pipeline = 42
            """
        )
    )
    (tmp_path / "broken_app.py").write_text("pipeline = 1 / 0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert load_app("my_app:pipeline").name == "mine"
    assert load_app("my_app:make").name == "made"
    for spec, message in [
        ("my_app", "name a built-in app"),
        ("no_such_module:pipeline", "cannot import 'no_such_module'"),
        ("my_app:missing", "has no attribute 'missing'"),
        ("my_app:not_a_pipeline", "is a int, not a ragbus.Pipeline"),
        ("broken_app:pipeline", r"importing 'broken_app' failed at .*broken_app.py:1: Zero"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            load_app(spec)


def test_control_event_names_are_reserved() -> None:
    with pytest.raises(ValueError, match="ragbus's own control events"):
        Pipeline("x").event("ragbus.cancel", TextIn)
