"""Every ``ragbus dlq`` command as an operator runs it: a fresh process each time, on
both buses, checking what it prints and how it exits.

A fresh process has declared nothing, so these tests also prove that the dead-letter
store finds a pipeline's dead letters from its stages, not from what one process did.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import pytest
from aiormq.exceptions import ChannelNotFoundEntity

from ragbus.bus.base import Bus, DeadLetter, DeadLetterFilter, DeadLetterReason, DeadLetterStore
from ragbus.bus.memory import MemoryBus
from ragbus.bus.rabbitmq.dead_letters import ATTEMPTS_HEADER, ID_HEADER, encode_dead_letter
from ragbus.cli_common import ExitCode
from ragbus.client import Client
from ragbus.config import Settings
from ragbus.config.urls import mask_url
from ragbus.events import Envelope, new_event
from ragbus.payloads.rag import DocumentsRetrieved, Passage, QueryReceived, RagEvent
from ragbus.pipelines.rag import STAGE_NAMES
from ragbus.pipelines.rag import pipeline as rag
from tests.amqp import Namespace
from tests.conftest import BUS_KINDS
from tests.foreign import publish_foreign, publish_raw

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Completed:
    """A finished command."""

    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


@dataclass
class Place:
    """Where one test's dead letters live, and how to reach them from outside.

    Parameters:
        kind: ``memory`` or ``rabbitmq``.
        env: the environment of a ``ragbus`` process (no other ``RAGBUS_`` variable).
        cwd: the folder commands run in.
        namespace: the RabbitMQ namespace (None on the memory bus).
    """

    kind: str
    env: dict[str, str]
    cwd: Path
    namespace: Namespace | None = None
    buses: list[Bus] = field(default_factory=list)

    def bus(self) -> Bus:
        """A new bus of this place (unconnected); closed after the test."""
        if self.namespace is None:
            made: Bus = MemoryBus(dlq_path=Path(self.env["RAGBUS_DLQ_PATH"]))
        else:
            made = self.namespace.make()
        self.buses.append(made)
        return made

    async def store(self) -> DeadLetterStore:
        """The dead-letter store of the pipeline's stages, on a connected bus."""
        bus = self.bus()
        await bus.connect()
        return bus.dead_letters(STAGE_NAMES)

    async def seed(self, letters: list[DeadLetter]) -> None:
        """Add ``letters`` through a bus of this test process (then closed)."""
        store = await self.store()
        for letter in letters:
            await store.add(letter)
        await self.buses[-1].close()

    async def listed(self) -> list[DeadLetter]:
        """What a bus of this test process lists now."""
        store = await self.store()
        try:
            return await store.select(DeadLetterFilter())
        finally:
            await self.buses[-1].close()

    def ragbus(self, *arguments: str, stdin: str = "", timeout: float = 60) -> Completed:
        """Run ``ragbus ARGUMENTS`` in a fresh process to its end."""
        result = subprocess.run(
            [sys.executable, "-m", "ragbus.cli", *arguments],
            env=self.env,
            cwd=self.cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Completed(result.returncode, result.stdout, result.stderr)


def base_env(**settings: str) -> dict[str, str]:
    """This process's environment without ``RAGBUS_`` variables, plus ``settings``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAGBUS_")}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="true", PYTHONUNBUFFERED="1", **settings)
    return env


@pytest.fixture(params=BUS_KINDS)
async def place(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Place]:
    """Dead letters of one test on each bus: a SQLite file in ``tmp_path``, or a fresh
    RabbitMQ namespace (deleted afterwards)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    if request.param == "memory":
        env = base_env(RAGBUS_BUS="memory", RAGBUS_DLQ_PATH=str(tmp_path / "dlq.sqlite3"))
        yield Place("memory", env, workdir)
        return
    namespace = Namespace(request.getfixturevalue("amqp_url"))
    namespace.stages.update(STAGE_NAMES)
    env = base_env(
        RAGBUS_BUS="rabbitmq",
        RAGBUS_AMQP_URL=namespace.url,
        RAGBUS_EXCHANGE=namespace.exchange,
        RAGBUS_QUEUE_PREFIX=namespace.prefix,
    )
    found = Place("rabbitmq", env, workdir, namespace)
    try:
        yield found
    finally:
        for bus in found.buses:
            await bus.close()
        if not namespace.buses:
            namespace.make()
        await namespace.cleanup()


def failed_query(question: str, *, stage: str = "retrieve", attempts: int = 5) -> DeadLetter:
    event = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=question))
    return DeadLetter.from_body(
        event.encode(),
        stage=stage,
        reason=DeadLetterReason.FAILED,
        error=TimeoutError("LM down"),
        attempts=attempts,
    )


def expired_retrieval() -> DeadLetter:
    query = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question="too late"))
    retrieved = query.derive(
        RagEvent.DOCUMENTS_RETRIEVED,
        DocumentsRetrieved(
            question="too late",
            passages=[Passage(doc_id="a#0", title="A", text="text", score=1.0)],
        ),
    )
    return DeadLetter.from_body(
        retrieved.encode(), stage="generate", reason=DeadLetterReason.EXPIRED, error="expired"
    )


def garbage() -> DeadLetter:
    return DeadLetter.from_body(
        b"garbage", stage="retrieve", reason=DeadLetterReason.INVALID, error="not JSON"
    )


def assert_one_error_line(result: Completed, code: int, text: str) -> None:
    assert result.code == code, result
    assert result.stderr.startswith("error: ") and text in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


async def declare_stage_queues(place: Place) -> None:
    """RabbitMQ: the stage queues a worker would have declared (a replay goes there)."""
    if place.namespace is None:
        return
    bus = place.bus()
    await bus.connect()
    await bus.declare("retrieve", [RagEvent.QUERY_RECEIVED])
    await bus.declare("generate", [RagEvent.DOCUMENTS_RETRIEVED])
    await bus.close()


async def drain_stage_queue(place: Place, stage: str) -> list[Envelope]:
    """RabbitMQ: take every message waiting in ``stage``'s queue."""
    assert place.namespace is not None
    connection = await aio_pika.connect(place.namespace.url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(place.namespace.topology.stage_queue(stage))
        events = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            events.append(rag.events.decode(message.body))
        return events
    finally:
        await connection.close()


async def test_every_dlq_command_from_a_fresh_process(place: Place, tmp_path: Path) -> None:
    letters = [failed_query(f"How does replay work? ({n})") for n in range(3)]
    letters += [garbage(), expired_retrieval()]
    await place.seed(letters)
    await declare_stage_queues(place)

    # list: what, and where (stderr), the password masked
    listed = place.ragbus("dlq", "list")
    assert listed.code == ExitCode.OK, listed
    assert "5 dead letters" in listed.stdout
    assert "TimeoutError: LM down" in listed.stdout and "How does replay work?" in listed.stdout
    if place.namespace is None:
        assert listed.stderr.strip() == f"dead letters: SQLite file {tmp_path / 'dlq.sqlite3'}"
    else:
        prefix = place.namespace.prefix
        assert listed.stderr.strip() == (
            f"dead letters: RabbitMQ {mask_url(place.namespace.url)}, queues "
            f"{prefix}.retrieve.dlq, {prefix}.generate.dlq"
        )

    # list, with each filter
    def ids(*options: str) -> list[str]:
        result = place.ragbus("dlq", "list", "--json", *options)
        assert result.code == ExitCode.OK, result
        return [json.loads(line)["id"] for line in result.lines]

    retrieve_failed = [str(letter.id) for letter in letters[:3]]
    assert ids("--reason", "failed") == retrieve_failed
    assert ids("--stage", "generate") == [str(letters[4].id)]
    assert ids("--error-type", "TimeoutError", "--limit", "2") == retrieve_failed[:2]
    assert ids("--correlation-id", str(letters[1].correlation_id)) == [str(letters[1].id)]
    assert len(ids("--since", "1h")) == 5
    assert ids("--until", "1h") == []
    assert place.ragbus("dlq", "list", "--until", "1h").stdout.strip() == "no dead letters"

    # show
    shown = place.ragbus("dlq", "show", str(letters[0].id)[:8])
    assert shown.code == ExitCode.OK, shown
    record = json.loads(shown.stdout)
    assert record["envelope"]["payload"]["question"] == "How does replay work? (0)"
    assert record["attempts"] == 5
    assert_one_error_line(place.ragbus("dlq", "show", "ffffffff"), 1, "no dead letter with id")

    # export (0600), to a file and to stdout
    export = tmp_path / "retrieve.jsonl"
    exported = place.ragbus("dlq", "export", str(export), "--stage", "retrieve")
    assert exported.code == ExitCode.OK, exported
    assert exported.stdout.strip() == f"exported 4 dead letters to {export}"
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    assert len(export.read_text().splitlines()) == 4
    to_stdout = place.ragbus("dlq", "export", "-", "--reason", "expired")
    assert [json.loads(line)["id"] for line in to_stdout.lines] == [str(letters[4].id)]

    # replay: a dry run changes nothing; then the failed ones, to their stage only
    dry = place.ragbus("dlq", "replay", "--dry-run")
    assert dry.code == ExitCode.OK, dry
    assert "would replay 4, skipped 1, failed 0 of 5 dead letters" in dry.stdout
    assert len(await place.listed()) == 5
    replayed = place.ragbus("dlq", "replay", "--stage", "retrieve", "--reason", "failed")
    assert replayed.code == ExitCode.OK, replayed
    assert "replayed 3, skipped 0, failed 0 of 3 dead letters" in replayed.stdout
    remaining = await place.listed()
    assert {letter.id for letter in remaining} == {letters[3].id, letters[4].id}
    if place.namespace is not None:  # no worker here: the events wait in retrieve's queue
        events = await drain_stage_queue(place, "retrieve")
        assert sorted(str(e.id) for e in events) == sorted(
            str(letter.event_id) for letter in letters[:3]
        )
        assert {(e.attempt, e.replays) for e in events} == {(1, 1)}
        assert await drain_stage_queue(place, "generate") == []

    # purge: asks first; --yes deletes
    refused = place.ragbus("dlq", "purge", "--reason", "invalid", stdin="n\n")
    assert refused.code == ExitCode.FAILED, refused
    assert "nothing deleted" in refused.stderr
    assert len(await place.listed()) == 2
    purged = place.ragbus("dlq", "purge", "--reason", "invalid", "--yes")
    assert purged.code == ExitCode.OK, purged
    assert purged.stdout.strip() == "deleted 1 dead letters"
    assert [letter.id for letter in await place.listed()] == [letters[4].id]
    nothing = place.ragbus("dlq", "purge", "--reason", "invalid", "--yes")
    assert (nothing.code, nothing.stdout.strip()) == (ExitCode.OK, "no dead letters match")

    # import what was exported: every record comes back as it was
    imported = place.ragbus("dlq", "import", str(export))
    assert imported.code == ExitCode.OK, imported
    assert imported.stdout.strip() == f"imported 4 dead letters from {export}"
    assert sorted(await place.listed(), key=lambda x: str(x.id)) == sorted(
        letters, key=lambda x: str(x.id)
    )


async def test_purging_invalid_events_deletes_them_all(place: Place, settings: Settings) -> None:
    """20 invalid events dead-lettered by a stage; a fresh ``dlq purge`` deletes all 20
    (on RabbitMQ it used to delete none: it scanned only what its own process declared)."""
    bus = place.bus()
    async with Client(settings, bus=bus, run_pipeline=True):
        for number in range(20):
            await publish_raw(bus, f"not JSON {number}".encode(), RagEvent.QUERY_RECEIVED)
        async with asyncio.timeout(30):
            while len(await bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter())) < 20:
                await asyncio.sleep(0.05)

    listed = place.ragbus("dlq", "list", "--reason", "invalid")
    assert listed.code == ExitCode.OK, listed
    assert "20 dead letters" in listed.stdout
    purged = place.ragbus("dlq", "purge", "--reason", "invalid", "--yes")
    assert purged.code == ExitCode.OK, purged
    assert purged.stdout.strip() == "deleted 20 dead letters"
    assert place.ragbus("dlq", "list").stdout.strip() == "no dead letters"


async def test_import_skips_and_reports_bad_letters_and_keeps_the_rest(
    place: Place, tmp_path: Path
) -> None:
    good = [failed_query("a good one"), garbage()]
    made_up = failed_query("to nowhere", stage="nope").model_dump_json()
    broken = failed_query("broken").model_dump(mode="json")
    broken["envelope"]["payload"] = {"k": 3}  # a failed event that breaks the contract
    export = tmp_path / "letters.jsonl"
    export.write_text(
        "\n".join(
            [
                good[0].model_dump_json(),
                made_up,
                "this is not JSON",
                json.dumps({"stage": "retrieve"}),
                json.dumps(broken),
                "[" * 20_000,
                good[1].model_dump_json(),
            ]
        )
        + "\n"
    )
    result = place.ragbus("dlq", "import", str(export))
    assert result.code == ExitCode.FAILED, result
    assert result.stdout.strip() == f"imported 2 dead letters from {export}, skipped 5"
    problems = result.stderr.strip().splitlines()
    assert [p.split(": skipped: ")[0] for p in problems] == [
        f"{export}, line {n}" for n in (2, 3, 4, 5, 6)
    ]
    assert "unknown stage 'nope'" in problems[0]
    assert "not JSON" in problems[1] and "not JSON" in problems[4]
    assert "not a dead letter" in problems[2]
    assert "not a valid event" in problems[3] and "payload.question" in problems[3]
    assert "Traceback" not in result.stderr
    assert {letter.id for letter in await place.listed()} == {letter.id for letter in good}
    if place.namespace is not None:  # nothing was declared for the made-up stage
        connection = await aio_pika.connect(place.namespace.url)
        try:
            channel = await connection.channel()
            with pytest.raises(ChannelNotFoundEntity):
                await channel.declare_queue(f"{place.namespace.prefix}.nope.dlq", passive=True)
        finally:
            await connection.close()


@pytest.mark.rabbitmq
async def test_a_damaged_dead_letter_is_listed_and_removable(amqp_url: str, tmp_path: Path) -> None:
    namespace = Namespace(amqp_url)
    namespace.stages.update(STAGE_NAMES)
    place = Place(
        "rabbitmq",
        base_env(
            RAGBUS_BUS="rabbitmq",
            RAGBUS_AMQP_URL=amqp_url,
            RAGBUS_EXCHANGE=namespace.exchange,
            RAGBUS_QUEUE_PREFIX=namespace.prefix,
        ),
        tmp_path,
        namespace,
    )
    try:
        sound = failed_query("sound")
        await place.seed([sound])
        body, headers = encode_dead_letter(failed_query("damaged"))
        headers |= {ID_HEADER: "not-a-uuid", ATTEMPTS_HEADER: "three"}
        dlq = namespace.topology.dead_letter_queue("retrieve")
        await publish_foreign(amqp_url, "", dlq, body, headers=headers)

        listed = place.ragbus("dlq", "list")
        assert listed.code == ExitCode.OK, listed
        assert "2 dead letters" in listed.stdout and "damaged" in listed.stdout
        warnings = [line for line in listed.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 2, listed.stderr
        assert "x-ragbus-dead-letter-id 'not-a-uuid' is not a UUID; listed as" in warnings[0]
        assert "x-ragbus-attempts 'three'" in warnings[1]
        records = [json.loads(line) for line in place.ragbus("dlq", "list", "--json").lines]
        [damaged] = [record for record in records if record["notes"]]
        correlation = damaged["envelope"]["correlation_id"]
        purged = place.ragbus("dlq", "purge", "--correlation-id", correlation, "-y")
        assert purged.stdout.strip() == "deleted 1 dead letters", purged
        assert [letter.id for letter in await place.listed()] == [sound.id]
    finally:
        for bus in place.buses:
            await bus.close()
        await namespace.cleanup()


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        (["dlq", "list", "--since", "yesterday"], ExitCode.USAGE, "not a time"),
        (["dlq", "replay", "--stage", "nope"], ExitCode.USAGE, "unknown stage 'nope'"),
        (["dlq", "import", "/no/such/file"], ExitCode.CONFIGURATION, "file does not exist"),
        (["dlq", "export", "/proc/no/such/dir/x.jsonl"], ExitCode.CONFIGURATION, "cannot write"),
    ],
)
def test_dlq_errors_are_one_line_with_their_exit_code(
    tmp_path: Path, arguments: list[str], code: int, message: str
) -> None:
    env = base_env(RAGBUS_DLQ_PATH=str(tmp_path / "dlq.sqlite3"))
    place = Place("memory", env, tmp_path)
    assert_one_error_line(place.ragbus(*arguments), code, message)


async def test_the_sqlite_dead_letter_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "dlq.sqlite3"
    store = MemoryBus(dlq_path=path).dead_letters(STAGE_NAMES)
    await store.add(garbage())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
