"""The ``ragbus`` command."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ragbus import __version__
from ragbus.bus.errors import BrokerRefusedError, BrokerUnavailableError
from ragbus.cli_common import (
    BusOption,
    CorpusOption,
    ExitCode,
    configure_logging,
    fail,
    run,
    settings_from,
)
from ragbus.cli_dlq import app as dlq_app
from ragbus.config import BusKind
from ragbus.errors import RagbusError
from ragbus.events import InvalidEvent, json_schemas

if TYPE_CHECKING:
    from ragbus.client import Answer

app = typer.Typer(
    name="ragbus",
    help="Run DSPy pipelines (retrieval-augmented QA first) as async stages on a message bus.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(dlq_app, name="dlq")


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"ragbus {__version__}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run DSPy pipelines (retrieval-augmented QA first) as async stages on a message bus."""


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the answer_generated event as JSON.")
    ] = False,
    bus: BusOption = None,
    corpus: CorpusOption = None,
    k: Annotated[
        int | None, typer.Option("--k", "-k", min=1, max=50, help="Passages to retrieve.")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait; also the deadline.")
    ] = 60.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    """Ask a question and print the answer, its sources and each stage's time.

    On the memory bus (the default) every stage runs in this process; on RabbitMQ the
    question goes to the workers and this command waits for its answer only.
    """
    configure_logging(verbose)
    if not question.strip():
        fail("the question is empty: ask something", ExitCode.USAGE)
    if corpus is not None and not corpus.exists():
        fail(
            f"corpus path does not exist: {corpus}; give a folder, a document or an index",
            ExitCode.CONFIGURATION,
        )
    # one attempt to reach a broker: waiting helps nobody at a prompt
    settings = settings_from(bus=bus, corpus=corpus, connect_timeout_s=0)
    from ragbus.client import Client

    async def go() -> Answer:
        async with Client(settings) as client:
            return await client.ask(question, k=k, timeout=timeout)

    answer = run(go())
    if as_json:
        typer.echo(answer.answer.model_dump_json(indent=2, exclude_none=True))
        return
    typer.echo(render_answer(answer))


def render_answer(answer: Answer) -> str:
    """The answer, its sources and stage times, as text for a terminal."""
    payload = answer.answer.payload
    lines = [payload["answer"], ""]
    if payload["sources"]:
        lines.append("Sources:")
        for number, source in enumerate(payload["sources"], start=1):
            title = f" — {source['title']}" if source.get("title") else ""
            lines.append(f"  [{number}] {source['doc_id']}{title} (score {source['score']:.2f})")
    else:
        lines.append("Sources: none found")
    total_ms = (answer.answer.created_at - answer.query.created_at).total_seconds() * 1000
    timings = ", ".join(f"{name} {ms:.1f} ms" for name, ms in payload["timings_ms"].items())
    kind = " (extractive, offline LM)" if payload.get("extractive") else ""
    lines += [
        "",
        f"Model: {payload['model']}{kind}",
        f"Stages: {timings}; end to end {total_ms:.1f} ms",
    ]
    return "\n".join(lines)


@app.command()
def schema(
    event_type: Annotated[
        str | None, typer.Argument(help="One event type (default: all of them).")
    ] = None,
) -> None:
    """Print the JSON Schema of the envelope and of each event payload."""
    try:
        schemas = json_schemas(event_type)
    except KeyError as exc:
        fail(str(exc.args[0]))
    typer.echo(json.dumps(schemas, indent=2))


def default_index_path(path: Path) -> Path:
    """Where ``ragbus index PATH`` writes: ``PATH/.ragbus-index`` for a folder,
    ``.NAME.ragbus-index`` beside a single file (hidden, so indexing the folder later
    skips it)."""
    return path / ".ragbus-index" if path.is_dir() else path.with_name(f".{path.name}.ragbus-index")


def _reading_progress() -> Callable[[int, int], None] | None:
    """A one-line counter of documents read, on a terminal only (logs stay clean)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        typer.echo(f"\rreading documents: {done}/{total}", err=True, nl=done == total)

    return show


@app.command()
def index(
    path: Annotated[
        Path,
        typer.Argument(
            help="A folder of .md, .txt and .jsonl documents (searched recursively), "
            "or one such file."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where to write the index (default: PATH/.ragbus-index for a folder, "
            ".NAME.ragbus-index beside a file).",
        ),
    ] = None,
) -> None:
    """Build a BM25 index of a folder (or one file) of documents; point RAGBUS_CORPUS at it.

    The folder is never left: symlinks that lead outside it, symlink loops and files
    that are not regular files are skipped, each one listed. A document larger than
    RAGBUS_CORPUS_MAX_FILE_BYTES, or more documents than RAGBUS_CORPUS_MAX_FILES, is an
    error. The index is written whole, readable by you only.
    """
    from ragbus.retrieval import CorpusLimits, SearchIndex, read_corpus

    configure_logging(False)
    if not path.exists():
        fail(
            f"{path} does not exist: give a folder or a .md, .txt or .jsonl file",
            ExitCode.CONFIGURATION,
        )
    settings = settings_from()
    target = out or default_index_path(path)
    try:
        read = read_corpus(
            path, limits=CorpusLimits.from_settings(settings), progress=_reading_progress()
        )
        built = SearchIndex.build(read.passages)
        built.save(target)
    except RagbusError as exc:
        fail(str(exc), ExitCode.CONFIGURATION)
    except OSError as exc:
        fail(
            f"cannot write the index to {target}: {exc.strerror or exc}; "
            "choose another place with --out",
            ExitCode.CONFIGURATION,
        )
    for skipped in read.skipped:
        typer.echo(f"skipped {skipped.name}: {skipped.reason}", err=True)
    typer.echo(f"indexed {len(built)} passages from {path} into {target}")
    typer.echo(f'use it with: RAGBUS_CORPUS={target} ragbus ask "..."')


@app.command()
def bench(
    bus: BusOption = None,
    queries: Annotated[int, typer.Option("--queries", "-n", min=1, help="Queries to run.")] = 2000,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", "-c", min=1, help="Queries in flight, and per-stage concurrency."
        ),
    ] = 100,
    lm_latency_ms: Annotated[
        float,
        typer.Option("--lm-latency-ms", min=0, help="Simulated LM delay in the generate stage."),
    ] = 0.0,
    anchor: Annotated[
        bool, typer.Option("--anchor/--no-anchor", help="Also run the hand-written anchor chain.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Measure queries/s and p50/p99 latency through all stages, beside an anchor."""
    from ragbus.benchmarks.run import BenchConfig, render_results, run_benchmarks

    configure_logging(False)
    settings = settings_from(bus=bus, lm_latency_ms=lm_latency_ms, concurrency=concurrency)
    config = BenchConfig(queries=queries, concurrency=concurrency, lm_latency_ms=lm_latency_ms)
    results = run(run_benchmarks(settings, config, anchor=anchor))
    if as_json:
        typer.echo(json.dumps([result.as_dict() for result in results], indent=2))
    else:
        typer.echo(render_results(results, config))


@app.command()
def worker(
    stages: Annotated[
        str,
        typer.Option("--stages", "-s", help="Comma-separated stages (retrieve,generate) or all."),
    ] = "all",
    bus: BusOption = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", min=1, help="In-flight events per stage.")
    ] = None,
    corpus: CorpusOption = None,
    host: Annotated[str, typer.Option(help="Interface of /healthz and /metrics.")] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(
            min=-1,
            max=65535,
            help="Port of /healthz and /metrics: default 9100, or a free one when 9100 is "
            "taken (the worker logs which); 0 picks a free one, -1 serves none.",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    """Serve pipeline stages from the bus until SIGTERM or Ctrl-C, then drain and exit 0.

    Run one worker per stage, or several per stage on many machines: each event is
    handled by one worker of its stage. Needs a shared bus (--bus rabbitmq).
    """
    from ragbus.worker import parse_stages, run_worker

    configure_logging(verbose)
    settings = settings_from(bus=bus, concurrency=concurrency, corpus=corpus)
    if settings.bus is BusKind.MEMORY:
        fail(
            "a worker needs a shared bus: use --bus rabbitmq (or RAGBUS_BUS=rabbitmq); "
            "the memory bus lives inside one process (see `ragbus ask`)",
            ExitCode.CONFIGURATION,
        )
    try:
        names = parse_stages(stages)
    except RagbusError as exc:
        fail(str(exc), ExitCode.USAGE)
    ops_endpoints = port is None or port >= 0
    run(
        run_worker(
            settings,
            names,
            host=host,
            port=port if ops_endpoints else None,
            ops_endpoints=ops_endpoints,
        )
    )


@app.command()
def serve(
    bus: BusOption = None,
    host: Annotated[
        str | None,
        typer.Option(help="Interface to bind; env RAGBUS_GATEWAY_HOST (default 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="TCP port; env RAGBUS_GATEWAY_PORT (default 8000)."),
    ] = None,
    corpus: CorpusOption = None,
    allow_unauthenticated: Annotated[
        bool | None,
        typer.Option(
            "--allow-unauthenticated",
            help="Serve a non-loopback --host without RAGBUS_API_TOKEN (a proxy in front "
            "authenticates); env RAGBUS_GATEWAY_ALLOW_UNAUTHENTICATED.",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    """Serve the HTTP gateway: a chat page on /, /v1/ask, /v1/ask/stream (SSE), /v1/ws
    (WebSocket), /v1/events, /healthz, /readyz, /metrics and /openapi.json.

    On the memory bus (the default) the pipeline runs in this process; on RabbitMQ the
    gateway talks to the workers (set RAGBUS_STREAM_TOKENS=true on generate workers to
    stream answer tokens). RAGBUS_API_TOKEN turns on bearer-token auth; without it the
    gateway refuses to listen beyond this machine. Limits and what the gateway trusts:
    docs/security.md.
    """
    from ragbus.errors import ConfigurationError
    from ragbus.gateway import serve as serve_gateway
    from ragbus.gateway.exposure import check_exposure

    configure_logging(verbose)
    if corpus is not None and not corpus.exists():
        fail(f"corpus path does not exist: {corpus}")
    settings = settings_from(
        bus=bus,
        corpus=corpus,
        gateway_host=host,
        gateway_port=port,
        gateway_allow_unauthenticated=allow_unauthenticated,
    )
    try:
        check_exposure(settings, settings.gateway_host)
    except ConfigurationError as exc:
        fail(str(exc), ExitCode.CONFIGURATION)
    typer.echo(
        f"ragbus gateway on http://{settings.gateway_host}:{settings.gateway_port}/ "
        f"({settings.bus.value} bus)",
        err=True,
    )
    try:
        serve_gateway(settings)
    except BrokerUnavailableError as exc:
        fail(str(exc), ExitCode.UNAVAILABLE)
    except (BrokerRefusedError, ConfigurationError) as exc:
        fail(str(exc), ExitCode.CONFIGURATION)
    except (RagbusError, OSError) as exc:
        fail(str(exc))


@app.command()
def publish(
    events: Annotated[
        list[str] | None,
        typer.Argument(help='Events as JSON: envelopes, minimal envelopes or {"question": ...}.'),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Read JSON or JSON lines from a file ('-' for stdin)."),
    ] = None,
    bus: BusOption = None,
) -> None:
    """Publish events to the bus, each confirmed by the broker before the next.

    With no arguments and no --file, reads JSON or JSON lines from stdin.
    """
    from ragbus.publishing import parse_events

    configure_logging(False)
    settings = settings_from(bus=bus, connect_timeout_s=0)  # one attempt to reach a broker
    if settings.bus is BusKind.MEMORY:
        fail("publishing needs a shared bus: use --bus rabbitmq (or RAGBUS_BUS=rabbitmq)")
    if events:
        text = "\n".join(events)
    elif file is not None and str(file) != "-":
        if not file.exists():
            fail(f"file does not exist: {file}")
        text = file.read_text()
    else:
        text = sys.stdin.read()
    try:
        parsed = parse_events(text)
    except InvalidEvent as exc:
        fail(str(exc))
    if not parsed:
        fail("no events given")

    async def go() -> None:
        from ragbus.bus.factory import make_bus

        async with make_bus(settings) as connected:
            for event in parsed:
                await connected.publish(event)
                typer.echo(json.dumps({"id": str(event.id), "type": event.type}))

    run(go())


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":
    main()
