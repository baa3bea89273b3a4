"""Operating dead letters: find, replay after a fix, filter, dry-run, purge, move."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragbus.bus.base import Bus, DeadLetter, DeadLetterFilter, DeadLetterReason
from ragbus.bus.memory import MemoryBus
from ragbus.cli import app
from ragbus.client import Client
from ragbus.config import Settings, default_dlq_path
from ragbus.dlq import replay, replay_event
from ragbus.errors import PermanentError
from ragbus.events import Envelope, EventType, QueryReceived, new_event
from ragbus.pipelines.rag import rag_pipeline
from ragbus.runtime.stage import Stage
from tests.conftest import BusFactory


class Outage:
    """A retrieve stage that fails permanently on questions containing "shard-7" until
    the cause is fixed."""

    def __init__(self) -> None:
        self.fixed = False

    def wrap(self, stage: Stage) -> Stage:
        real = stage.handler

        async def handler(event: Envelope) -> list[Envelope]:
            if not self.fixed and "shard-7" in event.payload["question"]:
                raise PermanentError("index shard 7 is missing")
            return await real(event)

        return dataclasses.replace(stage, handler=handler)


async def wait_until(predicate: object, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def test_failed_events_are_answered_after_the_fix_and_replay(
    make_bus: BusFactory, settings: Settings
) -> None:
    outage = Outage()
    retrieve, generate = rag_pipeline(settings)
    bus = make_bus()
    answered: dict[str, Envelope] = {}
    questions = [f"How does replay work? shard-{n % 10}" for n in range(40)]  # 4 break
    async with Client(
        settings, bus=bus, run_pipeline=True, stages=[outage.wrap(retrieve), generate]
    ) as client:

        async def collect() -> None:
            async for event in client.events([EventType.ANSWER_GENERATED]):
                answered[str(event.correlation_id)] = event

        collector = asyncio.create_task(collect())
        await asyncio.sleep(0.2)  # the follower is registered
        sent = [await client.publish({"question": q}) for q in questions]

        async def letters() -> list[DeadLetter]:
            return await bus.list_dead_letters(DeadLetterFilter())

        async def settled() -> bool:
            return len(answered) + len(await letters()) == 40

        await wait_until(settled)
        dead = await letters()
        assert len(dead) == 4
        assert {d.reason for d in dead} == {DeadLetterReason.FAILED}
        assert {d.error_type for d in dead} == {"PermanentError"}
        assert all("shard-7" in (d.envelope or {})["payload"]["question"] for d in dead)

        outage.fixed = True
        summary = await replay(bus, dead)
        assert (summary.replayed, summary.skipped, summary.failed) == (4, 0, 0)

        async def all_answered() -> bool:
            return len(answered) == 40

        await wait_until(all_answered)
        collector.cancel()
        assert await bus.list_dead_letters(DeadLetterFilter()) == []
    assert set(answered) == {str(event.id) for event in sent}


async def test_filters_select_exactly_and_dry_run_changes_nothing(bus: Bus) -> None:
    records = [
        ("retrieve", DeadLetterReason.FAILED, "PermanentError"),
        ("retrieve", DeadLetterReason.EXPIRED, "EventExpired"),
        ("generate", DeadLetterReason.FAILED, "LMServerError"),
        ("generate", DeadLetterReason.INVALID, "InvalidEvent"),
    ]
    events = [
        new_event(EventType.QUERY_RECEIVED, QueryReceived(question=f"q{n}")) for n in range(4)
    ]
    for event, (stage, reason, error_type) in zip(events, records, strict=True):
        await bus.declare(stage, [])
        letter = DeadLetter.from_body(event.encode(), stage=stage, reason=reason, error="x")
        await bus.dead_letter(letter.model_copy(update={"error_type": error_type}))

    async def ids(**where: object) -> set[str]:
        found = await bus.list_dead_letters(DeadLetterFilter(**where))  # type: ignore[arg-type]
        return {str(letter.envelope["id"]) for letter in found if letter.envelope}

    assert await ids(stage="retrieve") == {str(events[0].id), str(events[1].id)}
    assert await ids(reason=DeadLetterReason.FAILED) == {str(events[0].id), str(events[2].id)}
    assert await ids(error_type="LMServerError") == {str(events[2].id)}
    assert await ids(correlation_id=str(events[3].id)) == {str(events[3].id)}
    assert len(await ids(limit=3)) == 3
    before = await bus.list_dead_letters(DeadLetterFilter())
    summary = await replay(bus, before, dry_run=True)
    assert summary.replayed == 4
    assert await bus.list_dead_letters(DeadLetterFilter()) == before


def test_replay_event_resets_attempt_counts_replays_and_keeps_ids() -> None:
    event = new_event(EventType.QUERY_RECEIVED, {"question": "q"}).model_copy(update={"attempt": 5})
    letter = DeadLetter.from_body(
        event.encode(), stage="retrieve", reason=DeadLetterReason.FAILED, error="x"
    )
    replayed = replay_event(letter)
    assert (replayed.id, replayed.attempt, replayed.replays) == (event.id, 1, 1)
    minimal = DeadLetter.from_body(
        b'{"type": "query_received", "payload": {"question": "q"}}',
        stage="retrieve",
        reason=DeadLetterReason.FAILED,
        error="x",
    )
    assert replay_event(minimal).id == replay_event(minimal).id  # stable across replays
    raw = DeadLetter.from_body(
        b"not json", stage="retrieve", reason=DeadLetterReason.INVALID, error="x"
    )
    with pytest.raises(ValueError, match="not a JSON event"):
        replay_event(raw)


# the command line, on the embedded default ------------------------------------------------

runner = CliRunner()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder, no RAGBUS_ settings, and a user data directory of the test's own
    (where the memory bus keeps its dead letters by default)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for name in list(os.environ):
        if name.startswith("RAGBUS_"):
            monkeypatch.delenv(name)
    return tmp_path


async def seed(path: Path, letters: list[DeadLetter]) -> None:
    bus = MemoryBus(dlq_path=path)
    for letter in letters:
        await bus.dead_letter(letter)


def failed_query(question: str, stage: str = "retrieve") -> DeadLetter:
    event = new_event(EventType.QUERY_RECEIVED, QueryReceived(question=question))
    return DeadLetter.from_body(
        event.encode(),
        stage=stage,
        reason=DeadLetterReason.FAILED,
        error=TimeoutError("LM down"),
        attempts=5,
    )


def test_cli_lists_shows_replays_and_empties_the_dlq(workdir: Path) -> None:
    letters = [failed_query(f"How does ragbus handle a failed event? ({n})") for n in range(3)]
    letters.append(
        DeadLetter.from_body(
            b"garbage", stage="retrieve", reason=DeadLetterReason.INVALID, error="x"
        )
    )
    asyncio.run(seed(default_dlq_path(), letters))

    listed = runner.invoke(app, ["dlq", "list"])
    assert listed.exit_code == 0, listed.output
    assert "4 dead letters" in listed.output
    assert "TimeoutError: LM down" in listed.output and "How does ragbus" in listed.output

    as_json = runner.invoke(app, ["dlq", "list", "--json", "--reason", "failed"])
    assert [json.loads(line)["attempts"] for line in as_json.output.splitlines()] == [5, 5, 5]

    shown = runner.invoke(app, ["dlq", "show", str(letters[0].id)[:8]])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["envelope"]["payload"]["question"].endswith("(0)")

    dry = runner.invoke(app, ["dlq", "replay", "--dry-run"])
    assert "would replay 3, skipped 1" in dry.output
    assert "4 dead letters" in runner.invoke(app, ["dlq", "list"]).output

    replayed = runner.invoke(app, ["dlq", "replay", "--reason", "failed"])
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 3, skipped 0, failed 0 of 3" in replayed.output
    remaining = runner.invoke(app, ["dlq", "list", "--json"]).output.splitlines()
    assert [json.loads(line)["reason"] for line in remaining] == ["invalid"]


def test_cli_purge_asks_first_and_export_import_round_trip(workdir: Path, tmp_path: Path) -> None:
    letters = [failed_query(f"q{n}") for n in range(3)] + [failed_query("g", stage="generate")]
    asyncio.run(seed(default_dlq_path(), letters))
    export = tmp_path / "letters.jsonl"

    exported = runner.invoke(app, ["dlq", "export", str(export), "--stage", "retrieve"])
    assert "exported 3" in exported.output
    assert len(export.read_text().splitlines()) == 3

    refused = runner.invoke(app, ["dlq", "purge", "--stage", "retrieve"], input="n\n")
    assert refused.exit_code != 0
    assert "4 dead letters" in runner.invoke(app, ["dlq", "list"]).output

    purged = runner.invoke(app, ["dlq", "purge", "--stage", "retrieve", "--yes"])
    assert "deleted 3" in purged.output
    assert "1 dead letter" in runner.invoke(app, ["dlq", "list"]).output

    imported = runner.invoke(app, ["dlq", "import", str(export)])
    assert "imported 3" in imported.output
    assert "4 dead letters" in runner.invoke(app, ["dlq", "list"]).output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["dlq", "list", "--since", "yesterday"], "not a time"),
        (["dlq", "list", "--stage", "nope"], "unknown stage"),
        (["dlq", "show", "ffffffff"], "no dead letter with id"),
        (["dlq", "import", "/no/such/file"], "file does not exist"),
    ],
)
def test_cli_dlq_errors_are_one_line(workdir: Path, arguments: list[str], message: str) -> None:
    result = runner.invoke(app, arguments)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
