"""The ``ragbus`` command."""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ragbus import __version__
from ragbus.bus.errors import BrokerRefusedError, BrokerUnavailableError
from ragbus.cli_asyncapi import asyncapi
from ragbus.cli_common import (
    AppOption,
    BusOption,
    CorpusOption,
    ExitCode,
    LogFormatOption,
    configure_logging,
    fail,
    load_pipeline,
    observe,
    run,
    settings_from,
)
from ragbus.cli_dlq import app as dlq_app
from ragbus.cli_optimize import optimize, trainset
from ragbus.cli_rich import PhaseProgress, phased_progress, progress_bar
from ragbus.cli_status import status
from ragbus.config import BusKind
from ragbus.errors import InvalidEvent, RagbusError

if TYPE_CHECKING:
    from ragbus.client import Answer
    from ragbus.events import Envelope
    from ragbus.retrieval.indexer import IndexUpdate

# The interpreter's last garbage collection walks every object of every module a command
# loaded (60-80 ms for `ragbus --help`, more than its own work) only to free what the
# process's exit frees anyway: each command leaves its objects to the exit instead.
atexit.register(gc.freeze)

app = typer.Typer(
    name="ragbus",
    help="Run DSPy pipelines (retrieval-augmented QA first) as async stages on a message bus.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(dlq_app, name="dlq")
app.command()(optimize)
app.command()(trainset)
app.command()(status)
app.command()(asyncapi)


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
    question: Annotated[
        str | None, typer.Argument(help="The question to answer (or give --file).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the answer_generated event as JSON.")
    ] = False,
    bus: BusOption = None,
    app: AppOption = None,
    corpus: CorpusOption = None,
    k: Annotated[
        int | None, typer.Option("--k", "-k", min=1, max=50, help="Passages to retrieve.")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait; also the deadline.")
    ] = 60.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Answer every question of this file (.txt: one a line; .jsonl: objects "
            "with `question`) and print one JSON line each, in order.",
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=1000, help="With --file: asked at once.")
    ] = 8,
) -> None:
    """Ask a question and print the answer, its sources and each stage's time; or, with
    --file, answer a file of questions with a progress bar, one JSON line per question.

    On the memory bus (the default) every stage runs in this process; on RabbitMQ the
    question goes to the workers and this command waits for its answer only.
    """
    configure_logging(verbose)
    if (question is None) == (file is None):
        fail("give a question or --file, not both", ExitCode.USAGE)
    if question is not None and not question.strip():
        fail("the question is empty: ask something", ExitCode.USAGE)
    if corpus is not None and not corpus.exists():
        fail(
            f"corpus path does not exist: {corpus}; give a folder, a document or an index",
            ExitCode.CONFIGURATION,
        )
    # one attempt to reach a broker: waiting helps nobody at a prompt
    settings = settings_from(bus=bus, corpus=corpus, connect_timeout_s=0, app=app)
    observe(settings, "ragbus-ask", logs=False)
    pipeline = load_pipeline(settings)
    if question is None:
        from ragbus.cli_batch import ask_file

        assert file is not None
        ask_file(
            file,
            settings=settings,
            pipeline=pipeline,
            concurrency=concurrency,
            k=k,
            timeout=timeout,
        )
        return
    from ragbus.client import Client

    async def go() -> Answer:
        async with Client(settings, app=pipeline) as client:
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
    app: AppOption = None,
) -> None:
    """Print the JSON Schema of the envelope and of each event payload of the app."""
    pipeline = load_pipeline(settings_from(app=app))
    try:
        schemas = pipeline.events.schemas(event_type)
    except InvalidEvent as exc:
        fail(str(exc), ExitCode.USAGE)
    typer.echo(json.dumps(schemas, indent=2))


def default_index_path(path: Path) -> Path:
    """Where ``ragbus index PATH`` writes: ``PATH/.ragbus-index`` for a folder,
    ``.NAME.ragbus-index`` beside a single file (hidden, so indexing the folder later
    skips it)."""
    return path / ".ragbus-index" if path.is_dir() else path.with_name(f".{path.name}.ragbus-index")


def index_progress() -> contextlib.AbstractContextManager[PhaseProgress | None]:
    """The display of ``ragbus index``'s progress: a bar for each phase (reading the
    documents, embedding the passages) on a terminal; nothing elsewhere (logs stay
    clean). Yields the callback to give :func:`~ragbus.retrieval.indexer.update_index`."""
    return phased_progress({"reading": "reading documents", "embedding": "embedding passages"})


def _describe_update(update: IndexUpdate, path: Path, target: Path) -> list[str]:
    """What ``ragbus index`` says it did."""
    index = update.index
    lines = [f"indexed {len(index)} passages from {path} into {target}"]
    if update.rebuilt:
        lines.append(f"rebuilt the whole index: {update.rebuilt}")
    lines.append(
        f"files: {len(update.added)} added, {len(update.changed)} changed, "
        f"{len(update.removed)} removed, {len(update.unchanged)} unchanged"
    )
    if index.embeddings is not None:
        lines.append(
            f"embeddings ({index.embeddings.model}): {update.embedded} passages embedded, "
            f"{update.reused} reused"
        )
    if not update.written:
        lines.append("nothing changed: the index is as it was")
    lines.append(f"corpus version: {index.version}")
    lines.append(f'use it with: RAGBUS_CORPUS={target} ragbus ask "..."')
    return lines


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
    """Build or update the search index of a folder (or one file) of documents; point
    RAGBUS_CORPUS at it.

    Run it again after the documents change: only new and changed files are split and
    embedded again, deleted files leave the index, and when nothing changed the index
    is left as it was (so is the corpus version, and with it the cache). With
    RAGBUS_EMBED_MODEL set, the passages are embedded (in batches of
    RAGBUS_EMBED_BATCH_SIZE) for RAGBUS_RETRIEVER=dense or hybrid.

    The folder is never left: symlinks that lead outside it, symlink loops and files
    that are not regular files are skipped, each one listed. A document larger than
    RAGBUS_CORPUS_MAX_FILE_BYTES, or more documents than RAGBUS_CORPUS_MAX_FILES, is an
    error. The index is written whole, readable by you only.
    """
    import asyncio  # here: ``ragbus --help`` needs it not

    from ragbus.config import RetrieverKind
    from ragbus.errors import ConfigurationError
    from ragbus.retrieval import CorpusLimits
    from ragbus.retrieval.embedder import Embedder
    from ragbus.retrieval.indexer import update_index
    from ragbus.runtime.classify import FailureClass, classify

    configure_logging(False)
    if not path.exists():
        fail(
            f"{path} does not exist: give a folder or a .md, .txt or .jsonl file",
            ExitCode.CONFIGURATION,
        )
    settings = settings_from()
    embedder = Embedder.from_settings(settings)
    if embedder is None and settings.retriever is not RetrieverKind.BM25:
        fail(
            f"RAGBUS_RETRIEVER={settings.retriever.value} needs embeddings: set "
            "RAGBUS_EMBED_MODEL (e.g. openai/text-embedding-3-small) and index again",
            ExitCode.CONFIGURATION,
        )
    target = out or default_index_path(path)
    limits = CorpusLimits.from_settings(settings)
    try:
        with index_progress() as progress:
            update = asyncio.run(
                update_index(path, target, embedder=embedder, limits=limits, progress=progress)
            )
    except ConfigurationError as exc:
        fail(str(exc), ExitCode.CONFIGURATION)
    except OSError as exc:
        fail(
            f"cannot write the index to {target}: {exc.strerror or exc}; "
            "choose another place with --out",
            ExitCode.CONFIGURATION,
        )
    except KeyboardInterrupt:
        fail("interrupted: the index is as it was", ExitCode.INTERRUPTED)
    except Exception as exc:  # the embedding model's client: LiteLLM's many kinds
        assert embedder is not None
        unavailable = classify(exc) is FailureClass.TRANSIENT
        fail(
            f"cannot embed the passages with {embedder.model}: {type(exc).__name__}: {exc}; "
            + ("try again later" if unavailable else "check RAGBUS_EMBED_MODEL and its key"),
            ExitCode.UNAVAILABLE if unavailable else ExitCode.CONFIGURATION,
        )
    for skipped in update.skipped:
        typer.echo(f"skipped {skipped.name}: {skipped.reason}", err=True)
    for line in _describe_update(update, path, target):
        typer.echo(line)


@app.command()
def bench(
    app: AppOption = None,
    bus: BusOption = None,
    requests: Annotated[
        int, typer.Option("--requests", "-n", min=1, help="Requests to send in all.")
    ] = 2000,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", "-c", min=1, help="Requests in flight, and per-stage concurrency."
        ),
    ] = 100,
    lm_latency_ms: Annotated[
        float,
        typer.Option("--lm-latency-ms", min=0, help="Simulated delay of the offline LM."),
    ] = 0.0,
    payloads: Annotated[
        Path | None,
        typer.Option(
            "--payloads",
            help="JSON lines of entry-event payloads to send (default: the app's examples).",
        ),
    ] = None,
    event_type: Annotated[
        str | None,
        typer.Option("--type", help="The entry event type to send (default: the app's first)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Load-test the app: requests/s and p50/p99 latency through all its stages.

    The stages run in this process (on RabbitMQ in a throw-away namespace), with the
    cache and deduplication off. To compare ragbus with hand-written anchors, run
    bench/compare.py from a clone of the repository.
    """
    from ragbus.loadtest import example_payloads, load_test
    from ragbus.publishing import iter_json_values

    configure_logging(False)
    settings = settings_from(bus=bus, lm_latency_ms=lm_latency_ms, app=app)
    pipeline = load_pipeline(settings)
    try:
        if payloads is not None:
            if not payloads.is_file():
                fail(f"payloads file does not exist: {payloads}", ExitCode.CONFIGURATION)
            sent: Sequence[Any] = list(iter_json_values(payloads.read_text()))
            kind = event_type or pipeline.entry_events[0]
        else:
            kind, sent = example_payloads(pipeline)
            kind = event_type or kind
    except (RagbusError, InvalidEvent) as exc:
        fail(str(exc), ExitCode.CONFIGURATION)
    with progress_bar(f"{pipeline.name}: {kind}", requests) as advance:
        result = run(
            load_test(
                settings,
                pipeline,
                requests=requests,
                concurrency=concurrency,
                event_type=kind,
                payloads=sent,
                progress=advance,
            )
        )
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    summary = result.as_dict()
    typer.echo(
        f"{summary['answered']} of {requests} answered in {summary['seconds']} s: "
        f"{summary['per_second']} requests/s, p50 {summary['p50_ms']} ms, "
        f"p99 {summary['p99_ms']} ms" + (f"; errors: {summary['errors']}" if result.errors else "")
    )


@app.command()
def worker(
    stages: Annotated[
        str,
        typer.Option(
            "--stages",
            "-s",
            help="Comma-separated stages of the app (e.g. retrieve,generate) or all.",
        ),
    ] = "all",
    bus: BusOption = None,
    app: AppOption = None,
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
    processes: Annotated[
        int | None,
        typer.Option(
            "--processes",
            "-p",
            min=1,
            max=256,
            help="Worker processes to supervise, with one /metrics for all; env "
            "RAGBUS_WORKER_PROCESSES (default: one per core; 1: this process is the worker).",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
    log_format: LogFormatOption = None,
) -> None:
    """Serve pipeline stages from the bus until SIGTERM or Ctrl-C, then drain and exit 0.

    Run one worker per stage, or several per stage on many machines: each event is
    handled by one worker of its stage. Needs a shared bus (--bus rabbitmq). With more
    than one process it supervises them: it restarts one that dies and drains them all.
    """
    from ragbus.worker import parse_stages, run_worker
    from ragbus.worker_pool import pool_size, run_worker_pool

    configure_logging(verbose)
    settings = settings_from(
        bus=bus, concurrency=concurrency, corpus=corpus, app=app, log_format=log_format
    )
    try:
        count = pool_size(processes, settings)
    except RagbusError as exc:
        fail(str(exc), ExitCode.CONFIGURATION)
    if count == 1:  # a pool's processes trace and log for themselves
        observe(settings, "ragbus-worker")
    if settings.bus is BusKind.MEMORY:
        fail(
            "a worker needs a shared bus: use --bus rabbitmq (or RAGBUS_BUS=rabbitmq); "
            "the memory bus lives inside one process (see `ragbus ask`)",
            ExitCode.CONFIGURATION,
        )
    pipeline = load_pipeline(settings)
    try:
        names = parse_stages(pipeline, stages)
    except RagbusError as exc:
        fail(str(exc), ExitCode.USAGE)
    ops_endpoints = port is None or port >= 0
    if count > 1:
        pool = run_worker_pool(
            settings,
            pipeline,
            stages=stages,
            count=count,
            host=host,
            port=port if ops_endpoints else None,
            ops_endpoints=ops_endpoints,
            verbose=verbose,
        )
        raise typer.Exit(run(pool))
    run(
        run_worker(
            settings,
            pipeline,
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
    app: AppOption = None,
    allow_unauthenticated: Annotated[
        bool | None,
        typer.Option(
            "--allow-unauthenticated",
            help="Serve a non-loopback --host without RAGBUS_API_TOKEN (a proxy in front "
            "authenticates); env RAGBUS_GATEWAY_ALLOW_UNAUTHENTICATED.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=256,
            help="Gateway processes sharing the port (RabbitMQ only beyond 1); env "
            "RAGBUS_GATEWAY_WORKERS (default 1).",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
    log_format: LogFormatOption = None,
) -> None:
    """Serve the HTTP gateway: a chat page on /, /v1/ask, /v1/ask/stream (SSE), /v1/ws
    (WebSocket), /v1/events, /v1/status, /healthz, /readyz, /metrics, /openapi.json and
    /asyncapi.json.

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
        gateway_workers=workers,
        app=app,
        log_format=log_format,
    )
    if settings.gateway_workers > 1:
        from ragbus.gateway.pool import run_gateway_pool

        raise typer.Exit(run(run_gateway_pool(settings, settings.gateway_workers, verbose=verbose)))
    observe(settings, "ragbus-gateway")
    try:
        check_exposure(settings, settings.gateway_host)
    except ConfigurationError as exc:
        fail(str(exc), ExitCode.CONFIGURATION)
    pipeline = load_pipeline(settings)
    typer.echo(
        f"ragbus gateway on http://{settings.gateway_host}:{settings.gateway_port}/ "
        f"({settings.bus.value} bus)",
        err=True,
    )
    try:
        serve_gateway(settings, pipeline=pipeline)
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
    app: AppOption = None,
) -> None:
    """Publish events of the app to the bus, each confirmed by the broker before the next.

    With no arguments and no --file, reads JSON or JSON lines from stdin.
    """
    from ragbus.publishing import parse_events

    configure_logging(False)
    settings = settings_from(bus=bus, app=app, connect_timeout_s=0)  # one attempt to reach a broker
    observe(settings, "ragbus-publish", logs=False)
    pipeline = load_pipeline(settings)
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
        parsed = parse_events(text, pipeline)
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


@app.command()
def send(
    event: Annotated[
        str,
        typer.Argument(
            help='One event as JSON: an envelope {"type": ..., "payload": ...}, or a bare '
            "payload of the app's entry event."
        ),
    ],
    app: AppOption = None,
    bus: BusOption = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Wait for the app's final event for it and print it (default), or only "
            "publish and print the event's id.",
        ),
    ] = True,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait; also the deadline.")
    ] = 60.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    """Send one event into the app and print its result: the pipeline's final event of
    the same correlation, as JSON.

    On the memory bus (the default) every stage runs in this process; on RabbitMQ the
    workers handle it and this command waits for the result only.
    """
    from ragbus.client import Client
    from ragbus.json_input import MalformedJSON, parse_json
    from ragbus.publishing import to_envelope

    configure_logging(verbose)
    settings = settings_from(bus=bus, app=app, connect_timeout_s=0)
    observe(settings, "ragbus-send", logs=False)
    if not wait and settings.bus is BusKind.MEMORY:
        fail(
            "--no-wait needs a shared bus (--bus rabbitmq): on the memory bus the stages "
            "run inside this command, which must wait for them",
            ExitCode.USAGE,
        )
    pipeline = load_pipeline(settings)
    try:
        envelope = to_envelope(parse_json(event), pipeline)
    except MalformedJSON as exc:
        fail(f"the event is not JSON: {exc}", ExitCode.USAGE)
    except InvalidEvent as exc:
        fail(str(exc), ExitCode.USAGE)
    if envelope.deadline is None:
        from datetime import timedelta

        from ragbus.events import utc_now

        envelope = envelope.model_copy(update={"deadline": utc_now() + timedelta(seconds=timeout)})

    async def go() -> Envelope:
        async with Client(settings, app=pipeline, follow_progress=False) as client:
            if not wait:
                return await client.publish(envelope)
            return (await client.request(envelope, timeout=timeout)).event

    result = run(go())
    if wait:
        typer.echo(result.model_dump_json(indent=2, exclude_none=True))
    else:
        typer.echo(json.dumps({"id": str(result.id), "type": result.type}))


@app.command()
def analyze(
    file: Annotated[
        Path | None,
        typer.Argument(help="Texts, one per line (plain or JSON); '-' or nothing for stdin."),
    ] = None,
    app: Annotated[
        str,
        typer.Option("--app", help="The app to stream through (default: the built-in analyzer)."),
    ] = "analyzer",
    bus: BusOption = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help="Texts per LM call (default: the app's, 16)."),
    ] = None,
    in_flight: Annotated[
        int, typer.Option("--in-flight", min=1, help="Texts waiting for results at most.")
    ] = 64,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds one text may take.")
    ] = 60.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    """Analyze a stream of texts: print each one's sentiment, topics and entities as a JSON
    line as soon as it is ready.

    Input lines are plain text or JSON objects ({"text": ..., "source": ...}); a bad line
    is reported on stderr and skipped. On the memory bus (the default) the analyzer runs
    in this process, batching texts into LM calls; with --bus rabbitmq the texts go to
    `ragbus worker --app analyzer` workers.
    """
    from ragbus.client import Client
    from ragbus.text_stream import read_lines, stream_through

    configure_logging(verbose)
    settings = settings_from(bus=bus, app=app, connect_timeout_s=0)
    pipeline = load_pipeline(settings)
    if len(pipeline.entry_events) != 1:
        fail(
            f"app {pipeline.name!r} takes {', '.join(pipeline.entry_events) or 'no'} entry "
            "events; analyze needs exactly one",
            ExitCode.USAGE,
        )
    if batch_size is not None:
        for spec in list(pipeline.stages.values()):
            if spec.batch_size > 1:
                pipeline = pipeline.with_stage(spec.name, batch_size=batch_size)
    if file is not None and str(file) != "-" and not file.is_file():
        fail(f"file does not exist: {file}", ExitCode.CONFIGURATION)

    def emit(result: dict[str, object]) -> None:
        typer.echo(json.dumps(result, ensure_ascii=False))

    def report(message: str) -> None:
        typer.echo(f"error: {message}", err=True)

    async def go() -> object:
        source = sys.stdin if file is None or str(file) == "-" else file.open(encoding="utf-8")
        try:
            async with Client(settings, app=pipeline, follow_progress=False) as client:
                return await stream_through(
                    client,
                    read_lines(source),
                    event_type=pipeline.entry_events[0],
                    in_flight=in_flight,
                    timeout=timeout,
                    emit=emit,
                    report=report,
                )
        finally:
            if source is not sys.stdin:
                source.close()

    summary = run(go())
    done, invalid, failed = (getattr(summary, name) for name in ("done", "invalid", "failed"))
    typer.echo(f"{done} analyzed, {invalid} invalid lines, {failed} failed", err=True)
    if invalid or failed:
        raise typer.Exit(ExitCode.FAILED)


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":
    main()
