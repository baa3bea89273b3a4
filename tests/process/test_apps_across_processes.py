"""Pipelines other than RAG across worker processes on RabbitMQ, as users run them: the
worked example of docs/pipelines.md served by ``ragbus worker --app docs_example:pipeline``,
its dead letters operated with ``ragbus dlq --app``, and ``ragbus analyze`` streaming
through ``ragbus worker --app analyzer``."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from ragbus.bus.base import InboundMessage
from ragbus.bus.rabbitmq import RabbitMQBus
from ragbus.events import Envelope
from tests.amqp import Namespace
from tests.polling import wait_until
from tests.process.workers import Workers

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "docs_example.py"
APP = "docs_example:pipeline"


@pytest.fixture
def example(workers: Workers, namespace: Namespace) -> object:
    """The worked example, in the workers' working folder (importable as run from the
    folder that holds it), its stages known to the namespace's cleanup."""
    shutil.copy(EXAMPLE, workers.directory / "docs_example.py")
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        import docs_example  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(EXAMPLE.parent))
    namespace.stages.update(docs_example.pipeline.stage_names)
    return docs_example.pipeline


async def observe(namespace: Namespace, event_type: str) -> tuple[RabbitMQBus, list[Envelope]]:
    """A bus in ``namespace`` following every ``event_type`` event from now on."""
    bus = namespace.make()
    await bus.connect()
    seen: list[Envelope] = []

    async def record(message: InboundMessage) -> None:
        seen.append(Envelope.model_validate_json(message.body))

    bus.subscribe("observer", [event_type], record, concurrency=16, ephemeral=True)
    await bus.start()
    return bus, seen


async def test_a_users_pipeline_runs_in_worker_processes_and_its_dead_letters_replay(
    workers: Workers, namespace: Namespace, example: object, tmp_path: Path
) -> None:
    await asyncio.gather(
        workers.start("clean", name="clean", app=APP),
        workers.start("read", name="read", app=APP),
    )
    review = '{"text": "The battery lasts two days.  The speaker is weak.", "product": " X2 "}'
    sent = await workers.run("send", "--app", APP, review, timeout=90)
    assert sent.code == 0, sent.stderr + workers.report()
    read = json.loads(sent.stdout)
    assert read["type"] == "review_read"
    assert read["payload"]["product"] == "x2"
    assert read["payload"]["summary"] == "The battery lasts two days."
    assert read["payload"]["sentiment"] in {"positive", "negative", "neutral", "mixed"}

    # a dead letter of the user's `read` stage, operated from fresh processes
    cleaned = Envelope(
        type="review_cleaned", payload={"text": "Great screen, weak speaker.", "product": "x3"}
    )
    letter = {
        "id": "0b6f1a70-6d5e-4d8e-9a4c-2f1b7c9d3e11",
        "stage": "read",
        "reason": "failed",
        "error_type": "LMServerError",
        "error_message": "the LM failed five times",
        "attempts": 5,
        "envelope": json.loads(cleaned.encode()),
    }
    export = tmp_path / "letters.jsonl"
    export.write_text(json.dumps(letter) + "\n")
    imported = await workers.run("dlq", "import", "--app", APP, str(export))
    assert imported.code == 0, imported.stderr
    listed = await workers.run("dlq", "list", "--app", APP, "--json", "--stage", "read")
    assert [json.loads(line)["stage"] for line in listed.stdout.splitlines()] == ["read"]

    observer, seen = await observe(namespace, "review_read")
    try:
        replayed = await workers.run("dlq", "replay", "--app", APP, "--stage", "read")
        assert replayed.code == 0, replayed.stderr
        assert "replayed 1, skipped 0, failed 0 of 1" in replayed.stdout
        await wait_until(
            lambda: any(e.correlation_id == cleaned.id for e in seen),
            what="the replayed review read by the read worker",
            timeout=60,
            report=workers.report,
        )
    finally:
        await observer.close()
    left = await workers.run("dlq", "list", "--app", APP, "--json")
    assert left.code == 0 and left.stdout.strip() == "", left.stdout
    unknown = await workers.run("dlq", "list", "--app", APP, "--stage", "generate")
    assert unknown.code == 2 and "unknown stage 'generate' of app 'reviews'" in unknown.stderr


async def test_ragbus_analyze_streams_texts_through_analyzer_workers(
    workers: Workers, namespace: Namespace
) -> None:
    namespace.stages.add("analyze")
    await workers.start(name="analyzer", app="analyzer")
    texts = [f"Text {n}: the delivery from Acme Corp was great." for n in range(100)]
    done = await workers.run(
        "analyze", "--bus", "rabbitmq", stdin="\n".join(texts) + "\n", timeout=120
    )
    assert done.code == 0, done.stderr + workers.report()
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(result["line"] for result in results) == list(range(1, 101))
    assert all(result["sentiment"] == "positive" for result in results)
    assert all({"text": "Acme Corp", "type": "organization"} in r["entities"] for r in results)
    assert done.stderr.strip().endswith("100 analyzed, 0 invalid lines, 0 failed")
