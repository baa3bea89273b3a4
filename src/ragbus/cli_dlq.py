"""``ragbus dlq``: list, show, replay, purge, export and import dead letters.

Every command opens the bus's dead-letter store for the pipeline's stages (so it works
the same from a fresh process), tries the broker once (``RAGBUS_CONNECT_TIMEOUT_S`` is
for long-running processes), and exits with a :class:`~ragbus.cli_common.ExitCode`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from ragbus.bus.reasons import DeadLetterReason
from ragbus.cli_common import (
    AppOption,
    BusOption,
    ExitCode,
    configure_logging,
    fail,
    load_pipeline,
    run,
    settings_from,
)
from ragbus.cli_rich import progress_bar, table_console

# The store, the dead-letter models and the pipeline (pydantic) load when a command
# runs: ``ragbus --help`` and ``ragbus dlq --help`` only name the options.
if TYPE_CHECKING:
    from rich.table import Table

    from ragbus.bus.base import Bus, DeadLetter, DeadLetterFilter, DeadLetterStore
    from ragbus.config.settings import Settings
    from ragbus.dlq import ReplaySummary
    from ragbus.pipeline import Pipeline

T = TypeVar("T")

app = typer.Typer(
    help="Find, inspect, replay, purge, export and import dead letters (per stage).",
    no_args_is_help=True,
)

StageOption = Annotated[
    str | None, typer.Option("--stage", help="Only this stage of the app (e.g. generate).")
]
ReasonOption = Annotated[
    DeadLetterReason | None, typer.Option("--reason", help="Only this failure reason.")
]
ErrorTypeOption = Annotated[
    str | None, typer.Option("--error-type", help="Only this exception type, e.g. TimeoutError.")
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since", help="Failed at or after: ISO time (UTC if no zone) or an age: 10m, 2h."
    ),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Failed at or before: ISO time or an age.")
]
CorrelationOption = Annotated[
    str | None, typer.Option("--correlation-id", help="Only the events of this query.")
]
LimitOption = Annotated[int | None, typer.Option("--limit", min=1, help="At most this many.")]


def build_filter(
    pipeline: Pipeline,
    stage: str | None,
    reason: DeadLetterReason | None,
    error_type: str | None,
    since: str | None,
    until: str | None,
    correlation_id: str | None,
    limit: int | None,
) -> DeadLetterFilter:
    """The filter the options describe; a bad time or stage exits with one line (usage)."""
    from ragbus.bus.base import DeadLetterFilter
    from ragbus.dlq import parse_when

    if stage is not None and stage not in pipeline.stages:
        fail(
            f"unknown stage {stage!r} of app {pipeline.name!r}; "
            f"choose from {', '.join(pipeline.stage_names)}",
            ExitCode.USAGE,
        )
    try:
        since_at = parse_when(since) if since else None
        until_at = parse_when(until) if until else None
    except ValueError as exc:
        fail(str(exc), ExitCode.USAGE)
    return DeadLetterFilter(
        stage=stage,
        reason=reason,
        error_type=error_type,
        correlation_id=correlation_id,
        since=since_at,
        until=until_at,
        limit=limit,
    )


def dlq_settings(bus: BusOption, app: AppOption) -> tuple[Settings, Pipeline]:
    """The settings of a ``dlq`` command (from the environment, with ``--bus`` and
    ``--app``) and its pipeline; the broker is tried once (a command that waits for a
    broker helps nobody)."""
    settings = settings_from(bus=bus, app=app, connect_timeout_s=0)
    return settings, load_pipeline(settings)


def with_store(
    settings: Settings,
    pipeline: Pipeline,
    work: Callable[[Bus, DeadLetterStore], Awaitable[T]],
) -> T:
    """Connect to the bus ``settings`` name, run ``work`` with it and the dead-letter
    store of ``pipeline``'s stages, and disconnect."""
    from ragbus.bus.factory import make_bus

    async def go() -> T:
        async with make_bus(settings) as bus:
            return await work(bus, bus.dead_letters(pipeline.stage_names))

    return run(go())


def selected(settings: Settings, pipeline: Pipeline, where: DeadLetterFilter) -> list[DeadLetter]:
    """The dead letters of ``pipeline`` matching ``where``, oldest first."""

    async def work(bus: Bus, store: DeadLetterStore) -> list[DeadLetter]:
        return await store.select(where)

    return with_store(settings, pipeline, work)


def warn_damaged(letters: list[DeadLetter]) -> None:
    """Say on stderr which dead letters were listed from a damaged record, and how."""
    for letter in letters:
        for note in letter.notes:
            typer.echo(f"warning: dead letter {str(letter.id)[:8]}: {note}", err=True)


@contextlib.asynccontextmanager
async def embedded_pipeline(
    bus: Bus, settings: Settings, pipeline: Pipeline, *, active: bool
) -> AsyncIterator[None]:
    """On the memory bus, run the pipeline's stages in this process while the block runs
    and until every replayed event is handled: there are no workers elsewhere. On
    RabbitMQ (or when not ``active``) do nothing; the workers handle the replays."""
    # imported here: the host brings the runtime (cache, metrics), which listing needs not
    from ragbus.bus.memory import MemoryBus
    from ragbus.host import Host, runs_embedded

    if not active or not runs_embedded(settings) or not isinstance(bus, MemoryBus):
        yield
        return
    host = Host(pipeline, bus, settings)
    await host.start()
    try:
        yield
        await bus.drain()
    finally:
        await host.stop(settings.shutdown_grace_s)


def letters_table(letters: list[DeadLetter]) -> Table:
    """Dead letters as a ``rich`` table: id, stage, reason, error, attempts, age and
    the question (or the start of the payload)."""
    from rich.table import Table

    from ragbus.dlq import age, question_excerpt

    now = datetime.now().astimezone()
    table = Table(
        caption=f"{len(letters)} dead letter{'s' if len(letters) != 1 else ''}",
        caption_justify="left",
    )
    for header in ("ID", "STAGE", "REASON", "ERROR", "ATTEMPTS", "AGE", "QUESTION"):
        table.add_column(header, justify="right" if header == "ATTEMPTS" else "left")
    for letter in letters:
        error = (
            f"{letter.error_type}: {letter.error_message}"
            if letter.error_type
            else letter.error_message
        )
        error = " ".join(error.split())
        table.add_row(
            str(letter.id)[:8],
            letter.stage,
            letter.reason.value,
            error if len(error) <= 48 else error[:47] + "…",
            str(letter.attempts),
            age(letter.last_failed_at, now=now),
            question_excerpt(letter),
        )
    return table


@app.command("list")
def list_letters(
    stage: StageOption = None,
    reason: ReasonOption = None,
    error_type: ErrorTypeOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    correlation_id: CorrelationOption = None,
    limit: LimitOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    bus: BusOption = None,
    app: AppOption = None,
) -> None:
    """List dead letters, oldest first, and say on stderr where they are kept. Changes
    nothing. A damaged record is listed with what could be read, and a warning."""
    from ragbus.dlq import export_lines

    configure_logging(False)
    settings, pipeline = dlq_settings(bus, app)
    where = build_filter(pipeline, stage, reason, error_type, since, until, correlation_id, limit)

    async def work(connected: Bus, store: DeadLetterStore) -> list[DeadLetter]:
        typer.echo(f"dead letters: {store.location}", err=True)
        return await store.select(where)

    letters = with_store(settings, pipeline, work)
    warn_damaged(letters)
    if as_json:
        for line in export_lines(letters):
            typer.echo(line)
    else:
        if letters:
            table_console().print(letters_table(letters))
        else:
            typer.echo("no dead letters")


@app.command()
def show(
    letter_id: Annotated[
        str, typer.Argument(help="The dead letter's id, or its first characters.")
    ],
    bus: BusOption = None,
    app: AppOption = None,
) -> None:
    """Print one dead letter whole: the original event and its failure record."""
    from ragbus.bus.base import DeadLetterFilter
    from ragbus.dlq import find

    configure_logging(False)
    settings, pipeline = dlq_settings(bus, app)
    letters = selected(settings, pipeline, DeadLetterFilter())
    try:
        letter = find(letters, letter_id)
    except LookupError as exc:
        fail(str(exc))
    typer.echo(json.dumps(letter.model_dump(mode="json"), indent=2))


@app.command("replay")
def replay_letters(
    stage: StageOption = None,
    reason: ReasonOption = None,
    error_type: ErrorTypeOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    correlation_id: CorrelationOption = None,
    limit: LimitOption = None,
    rate: Annotated[
        float | None, typer.Option("--rate", min=0.01, help="At most this many events per second.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be replayed; change nothing.")
    ] = False,
    bus: BusOption = None,
    app: AppOption = None,
) -> None:
    """Republish matching dead events to their own stage, attempt reset, replays counted.

    Each dead letter is removed only after the broker confirmed its republish. On the
    memory bus the stages run in this command until the replayed events are handled.
    """
    from ragbus.dlq import replay

    configure_logging(False)
    settings, pipeline = dlq_settings(bus, app)
    where = build_filter(pipeline, stage, reason, error_type, since, until, correlation_id, limit)

    async def work(connected: Bus, store: DeadLetterStore) -> tuple[int, ReplaySummary]:
        letters = await store.select(where)
        async with embedded_pipeline(connected, settings, pipeline, active=not dry_run):
            with progress_bar("replaying", len(letters)) as advance:
                done = 0

                def one_more(_: DeadLetter) -> None:
                    nonlocal done
                    done += 1
                    advance(done)

                summary = await replay(
                    connected,
                    store,
                    letters,
                    pipeline.events,
                    rate=rate,
                    dry_run=dry_run,
                    progress=one_more,
                )
            return len(letters), summary

    total, summary = with_store(settings, pipeline, work)
    for problem in summary.problems:
        typer.echo(problem, err=True)
    verb = "would replay" if dry_run else "replayed"
    typer.echo(
        f"{verb} {summary.replayed}, skipped {summary.skipped}, "
        f"failed {summary.failed} of {total} dead letters"
    )
    if summary.failed:
        raise typer.Exit(ExitCode.FAILED)


@app.command()
def purge(
    stage: StageOption = None,
    reason: ReasonOption = None,
    error_type: ErrorTypeOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    correlation_id: CorrelationOption = None,
    limit: LimitOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    bus: BusOption = None,
    app: AppOption = None,
) -> None:
    """Delete matching dead letters for good (asks first unless --yes)."""
    configure_logging(False)
    settings, pipeline = dlq_settings(bus, app)
    where = build_filter(pipeline, stage, reason, error_type, since, until, correlation_id, limit)
    letters = selected(settings, pipeline, where)
    if not letters:
        typer.echo("no dead letters match")
        return
    if not yes and not typer.confirm(f"Delete {len(letters)} dead letters for good?"):
        fail("nothing deleted")

    async def work(connected: Bus, store: DeadLetterStore) -> int:
        return await store.remove([letter.id for letter in letters])

    removed = with_store(settings, pipeline, work)
    gone = len(letters) - removed
    typer.echo(
        f"deleted {removed} dead letters"
        + (f" ({gone} of those listed were already gone)" if gone else "")
    )


@app.command("export")
def export_letters(
    file: Annotated[Path, typer.Argument(help="Where to write them, as JSON lines ('-': stdout).")],
    stage: StageOption = None,
    reason: ReasonOption = None,
    error_type: ErrorTypeOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    correlation_id: CorrelationOption = None,
    limit: LimitOption = None,
    bus: BusOption = None,
    app: AppOption = None,
) -> None:
    """Write matching dead letters to a JSON-lines file. Changes nothing."""
    from ragbus.dlq import export_lines
    from ragbus.files import write_private

    configure_logging(False)
    settings, pipeline = dlq_settings(bus, app)
    where = build_filter(pipeline, stage, reason, error_type, since, until, correlation_id, limit)
    letters = selected(settings, pipeline, where)
    warn_damaged(letters)
    text = "".join(f"{line}\n" for line in export_lines(letters))
    if str(file) == "-":
        typer.echo(text, nl=False)
        return
    try:
        write_private(file, text)  # 0600: dead letters hold what users asked
    except OSError as exc:
        fail(f"cannot write {file}: {exc.strerror or exc}", ExitCode.CONFIGURATION)
    typer.echo(f"exported {len(letters)} dead letters to {file}")


@app.command("import")
def import_letters(
    file: Annotated[Path, typer.Argument(help="A JSON-lines file from `ragbus dlq export`.")],
    bus: BusOption = None,
    app: AppOption = None,
) -> None:
    """Add the dead letters of an export to this environment's dead-letter queues.

    Each letter's stage must be one of the pipeline's, and its envelope a valid event
    (unless it is an ``invalid`` one, kept as it came): a bad letter is skipped and
    reported on stderr, the rest are imported, and the command exits 1 if any was
    skipped.
    """
    from ragbus.bus.errors import BusError
    from ragbus.dlq import read_export

    configure_logging(False)
    settings, pipeline = dlq_settings(bus, app)
    if not file.is_file():
        fail(f"file does not exist: {file}", ExitCode.CONFIGURATION)
    try:
        reading = read_export(file, pipeline)
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}", ExitCode.CONFIGURATION)
    problems = list(reading.problems)

    async def work(connected: Bus, store: DeadLetterStore) -> int:
        imported = 0
        for letter in reading.letters:
            try:
                await store.add(letter)
            except BusError as exc:
                problems.append(f"{letter.id}: not imported: {exc}")
            else:
                imported += 1
        return imported

    count = with_store(settings, pipeline, work)
    for problem in problems:
        typer.echo(problem, err=True)
    skipped = len(problems)
    typer.echo(
        f"imported {count} dead letters from {file}" + (f", skipped {skipped}" if skipped else "")
    )
    if skipped:
        raise typer.Exit(ExitCode.FAILED)
