"""Any pipeline on the bus: two pipelines in one process, a user's pipeline on both buses,
and commands that take it with --app, as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from ragbus.bus.base import DeadLetterFilter, InboundMessage
from ragbus.client import Client
from ragbus.config import Settings
from ragbus.events import Envelope
from ragbus.host import Host
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.pipeline import Pipeline
from ragbus.pipelines.rag import pipeline as rag
from tests.conftest import BusFactory

#: A user's pipeline module, as a user would write it (imported by name in subprocesses).
TOY_MODULE = '''
    """A user's pipeline: clean a text, then count its words."""
    from pydantic import BaseModel, Field

    from ragbus import Envelope, Pipeline


    class TextIn(BaseModel):
        text: str = Field(min_length=1, max_length=1000)


    class Cleaned(BaseModel):
        text: str


    class Counted(BaseModel):
        text: str
        words: int


    pipeline = Pipeline("toy")
    pipeline.event("text_in", TextIn, examples=[{"text": "one  two   three"}])
    pipeline.event("text_cleaned", Cleaned)
    pipeline.event("words_counted", Counted)


    @pipeline.stage(consumes="text_in", produces="text_cleaned")
    async def clean(text: TextIn) -> Cleaned:
        return Cleaned(text=" ".join(text.text.split()))


    @pipeline.stage("count", consumes="text_cleaned", produces="words_counted")
    async def count_words(event: Envelope) -> list[Envelope]:
        text = event.payload["text"]
        return [event.derive("words_counted", Counted(text=text, words=len(text.split())))]
'''


def toy_module(directory: Path) -> Pipeline:
    """Write the toy module into ``directory`` (on ``sys.path``) and import it."""
    (directory / "toy_app.py").write_text(textwrap.dedent(TOY_MODULE))
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    sys.modules.pop("toy_app", None)
    import toy_app  # type: ignore[import-not-found]

    pipeline: Pipeline = toy_app.pipeline
    return pipeline


async def test_two_pipelines_share_one_bus_without_interfering(
    make_bus: BusFactory, settings: Settings, tmp_path: Path
) -> None:
    toy = toy_module(tmp_path)
    bus = make_bus()
    await bus.connect()
    finals: asyncio.Queue[Envelope] = asyncio.Queue()

    async def watch(message: InboundMessage) -> None:
        kind = json.loads(message.body)["type"]
        events = rag.events if kind in rag.events else toy.events
        await finals.put(events.decode(message.body))

    try:
        hosts = [Host(rag, bus, settings), Host(toy, bus, settings)]
        for host in hosts:
            await host.attach()
        bus.subscribe(
            "watch", ["answer_generated", "words_counted"], watch, concurrency=8, ephemeral=True
        )
        await bus.start()
        question = rag.events.new(RagEvent.QUERY_RECEIVED, QueryReceived(question="What is a DLQ?"))
        text = toy.events.new("text_in", {"text": " a  b  c "})
        await bus.publish(question)
        await bus.publish(text)
        received = {}
        async with asyncio.timeout(30):
            while len(received) < 2:
                event = await finals.get()
                received[event.type] = event
        assert received["answer_generated"].correlation_id == question.id
        assert received["words_counted"].correlation_id == text.id
        assert received["words_counted"].payload == {"text": "a b c", "words": 3}
        for host in hosts:
            stages = host.pipeline.stage_names
            assert set(host.runtime.consumers) == set(stages)  # type: ignore[union-attr]
        for pipeline in (rag, toy):
            store = bus.dead_letters(pipeline.stage_names)
            assert await store.select(DeadLetterFilter()) == []
    finally:
        await bus.stop(grace=1)
        await bus.close()


async def test_a_users_pipeline_runs_through_the_client_on_both_buses(
    make_bus: BusFactory, settings: Settings, tmp_path: Path
) -> None:
    toy = toy_module(tmp_path)
    async with Client(settings, app=toy, bus=make_bus(), run_pipeline=True) as client:
        results = await asyncio.gather(
            *(client.request({"text": f"word {'x ' * n}"}, timeout=20) for n in range(20))
        )
    for n, result in enumerate(results):
        assert result.event.type == "words_counted"
        assert result.event.payload["words"] == n + 1
        assert [event.type for event in result.progress] == ["text_cleaned"]


def run_ragbus(
    cwd: Path, *arguments: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``ragbus ARGUMENTS`` in a fresh process in ``cwd``, with no RAGBUS_ setting leaking."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGBUS_")}
    env["RAGBUS_DLQ_PATH"] = str(cwd / "dlq.sqlite3")
    return subprocess.run(
        [sys.executable, "-m", "ragbus.cli", *arguments],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_send_schema_and_bench_take_a_users_app(tmp_path: Path) -> None:
    toy_module(tmp_path)
    sent = run_ragbus(tmp_path, "send", "--app", "toy_app:pipeline", '{"text": " x  y "}')
    assert sent.returncode == 0, sent.stderr
    result = json.loads(sent.stdout)
    assert result["type"] == "words_counted" and result["payload"] == {"text": "x y", "words": 2}
    schema = run_ragbus(tmp_path, "schema", "--app", "toy_app:pipeline")
    assert schema.returncode == 0, schema.stderr
    assert set(json.loads(schema.stdout)["payloads"]) == {
        "text_in",
        "text_cleaned",
        "words_counted",
    }
    bench = run_ragbus(tmp_path, "bench", "--app", "toy_app:pipeline", "-n", "50", "--json")
    assert bench.returncode == 0, bench.stderr
    assert json.loads(bench.stdout)["answered"] == 50
    refused = run_ragbus(tmp_path, "send", "--app", "toy_app:pipeline", '{"text": ""}')
    assert refused.returncode == 2
    assert (
        refused.stderr.startswith("error: invalid event: payload.text")
        and "Traceback" not in refused.stderr
    )
    missing = run_ragbus(tmp_path, "send", "--app", "nope_app:pipeline", '{"text": "x"}')
    assert missing.returncode == 3
    assert missing.stderr.strip() == (
        "error: --app 'nope_app:pipeline': cannot import 'nope_app': No module named 'nope_app'"
    )


async def test_the_pytest_fixture_runs_a_users_pipeline(
    ragbus_harness: Any, tmp_path: Path
) -> None:
    toy = toy_module(tmp_path)
    async with ragbus_harness(toy) as harness:
        sent = await harness.publish({"text": " one   two "})
        result = await harness.result(sent)
        assert result.payload == {"text": "one two", "words": 2}
        assert [e.type for e in harness.events(sent)] == [
            "text_in",
            "text_cleaned",
            "words_counted",
        ]
        invalid = await harness.publish(
            Envelope(type="text_cleaned", payload={"text": "x"})
        )  # the count stage's input, published from outside: handled like any other
        assert (await harness.result(invalid)).payload == {"text": "x", "words": 1}
        assert await harness.dead_letters() == []
        assert harness.client is not None  # its files are the test's own
        assert harness.client.settings.dlq_path == tmp_path / "dlq.sqlite3"
