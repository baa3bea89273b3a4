"""Profile one benchmark contender with pyinstrument and say where its CPU time goes.

    .venv/bin/python bench/profile.py --bus rabbitmq --contender ragbus --queries 2000

Runs the contender alone (set up and warmed up outside the profile), samples the event
loop's thread, and prints: the busy share of the wall time, busy time per area (DSPy,
pydantic, the AMQP client, ragbus's runtime, ...: self time of the functions in each
area), busy time under some key functions (inclusive), and the top functions by self
time, all in milliseconds per query. ``--html`` also writes pyinstrument's report.

pyinstrument is a dev tool, not a ragbus dependency: ``pip install pyinstrument``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from ragbus.config import BusKind, load_settings
from ragbus_bench.handlers import rag_handlers
from ragbus_bench.load import AskOne, closed_loop

#: Areas by path fragment, first match wins; the rest is named by its top package.
AREAS: tuple[tuple[str, str], ...] = (
    ("/ragbus/runtime/", "ragbus runtime (guards, consumer)"),
    ("/ragbus/bus/", "ragbus bus"),
    ("/ragbus/client.py", "ragbus client"),
    ("/ragbus/events.py", "ragbus events"),
    ("/ragbus/handlers/", "ragbus handlers"),
    ("/ragbus/lm/", "ragbus offline LM"),
    ("/ragbus/retrieval/", "BM25 retrieval"),
    ("/bench/ragbus_bench/", "benchmark harness"),
    ("/dspy/", "DSPy"),
    ("/litellm/", "LiteLLM"),
    ("/pydantic", "pydantic"),
    ("/aio_pika/", "AMQP client (aio-pika, aiormq, pamqp)"),
    ("/aiormq/", "AMQP client (aio-pika, aiormq, pamqp)"),
    ("/pamqp/", "AMQP client (aio-pika, aiormq, pamqp)"),
    ("/faststream/", "FastStream"),
    ("/fast_depends/", "FastStream"),
    ("/bm25s/", "BM25 retrieval"),
    ("/numpy/", "BM25 retrieval"),
    ("/scipy/", "BM25 retrieval"),
    ("/asyncio/", "asyncio"),
    ("/json/", "json"),
    ("/uuid.py", "uuid"),
    ("/aiocache/", "aiocache"),
    ("/prometheus_client/", "prometheus-client"),
    ("/tenacity/", "tenacity"),
)

#: Functions whose inclusive time is shown: label -> (path fragment, function name).
KEY_FUNCTIONS: dict[str, tuple[str, str]] = {
    "generate handler (DSPy call included)": ("/ragbus/handlers/generate.py", "__call__"),
    "retrieve handler (BM25 included)": ("/ragbus/handlers/retrieve.py", "__call__"),
    "ragbus: stage consumer (a delivery's work)": ("/ragbus/runtime/consumer.py", "__call__"),
    "ragbus: bus publish (encode + aio-pika)": ("/ragbus/bus/rabbitmq/publisher.py", "publish"),
    "ragbus: bus delivery (consumer + ack)": ("/ragbus/bus/rabbitmq/consumer.py", "_deliver"),
    "ragbus: memory bus delivery": ("/ragbus/bus/memory.py", "_deliver"),
    "ragbus: decode and validate": ("/ragbus/events.py", "decode"),
    "ragbus: result cache guard": ("/ragbus/runtime/result_cache.py", "__call__"),
    "ragbus: client listener": ("/ragbus/client.py", "__call__"),
    "ragbus: client ask": ("/ragbus/client.py", "ask"),
    "aio-pika exchange.publish": ("/aio_pika/exchange.py", "publish"),
    "aiormq frame reader": ("/aiormq/connection.py", "__reader"),
    "aiormq channel reader": ("/aiormq/channel.py", "_reader"),
    "FastStream consume": ("/faststream/_internal/endpoint/subscriber/usecase.py", "consume"),
}

#: Functions where the loop waits for I/O (called from ``selectors.py``): their self time
#: is idle, not busy.
IDLE_FUNCTIONS = frozenset({"select", "poll", "epoll.poll", "kqueue.control"})


def area_of(path: str | None) -> str:
    """The area of a source file (see :data:`AREAS`)."""
    if not path:
        return "(native)"
    for fragment, area in AREAS:
        if fragment in path:
            return area
    parts = Path(path).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    return Path(path).name


def has_source(frame: Any) -> bool:
    """Whether ``frame`` runs Python code of a real file (not a built-in or generated)."""
    path = frame.file_path or ""
    return bool(path) and not path.startswith("<")


def walk(
    frame: Any, ancestors: tuple[str, ...] = (), caller: str | None = None
) -> Iterator[tuple[Any, tuple[str, ...], str | None]]:
    """Every frame of the tree under ``frame``, with the identifiers above it and the
    file of the nearest frame (itself included) that runs Python source: built-ins and
    generated code (``<string>``) count for the code calling them."""
    own = frame.file_path if has_source(frame) else caller
    yield frame, ancestors, own
    for child in frame.children:
        yield from walk(child, (*ancestors, frame.identifier), own)


def is_idle(frame: Any, path: str | None) -> bool:
    """Whether ``frame``, run from the file ``path``, is the loop waiting for I/O (the
    selector's ``poll``)."""
    return frame.function in IDLE_FUNCTIONS and path is not None and "selectors" in path


def report(root: Any, queries: int, top: int) -> str:
    """The text report of a pyinstrument frame tree covering ``queries`` questions."""
    by_area: dict[str, float] = defaultdict(float)
    by_function: dict[str, float] = defaultdict(float)
    inclusive: dict[str, float] = defaultdict(float)
    idle = 0.0
    for frame, ancestors, path in walk(root):
        if frame.is_synthetic:
            continue
        own = frame.total_self_time
        if is_idle(frame, path):
            idle += own
            continue
        by_area[area_of(path)] += own
        source = f"{Path(frame.file_path or '?').name}:{frame.line_no}"
        where = f"{frame.function} ({area_of(path)}: {source})"
        by_function[where] += own
        for label, (fragment, function) in KEY_FUNCTIONS.items():
            if (
                frame.function == function
                and fragment in (frame.file_path or "")
                and frame.identifier not in ancestors  # count recursion once
            ):
                inclusive[label] += frame.time
    busy = sum(by_area.values())
    per_query = 1000 / max(queries, 1)
    lines = [
        f"sampled {root.time:.2f} s of wall time: busy {busy:.2f} s "
        f"({busy / max(root.time, 1e-9):.0%}), waiting for I/O {idle:.2f} s; "
        f"busy {busy * per_query:.2f} ms per query",
        "",
        "busy time by area (self time)        ms/query   share",
    ]
    for area, seconds in sorted(by_area.items(), key=lambda item: -item[1]):
        if seconds * per_query >= 0.01:
            lines.append(f"  {area:<40} {seconds * per_query:>7.2f} {seconds / busy:>7.1%}")
    lines += ["", "inclusive time under key functions   ms/query   share of busy"]
    for label, seconds in sorted(inclusive.items(), key=lambda item: -item[1]):
        lines.append(f"  {label:<52} {seconds * per_query:>7.2f} {seconds / busy:>7.1%}")
    lines += ["", f"top {top} functions by self time                     ms/query"]
    for where, seconds in sorted(by_function.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {where[:90]:<90} {seconds * per_query:>7.3f}")
    return "\n".join(lines)


def callers(root: Any, function: str, queries: int, depth: int = 4) -> str:
    """Where ``function`` is called from: its time per query by the ``depth`` frames
    above it (the nearest first)."""
    by_chain: dict[str, float] = defaultdict(float)

    def visit(frame: Any, chain: tuple[Any, ...]) -> None:
        if frame.function == function or frame.function.endswith("." + function):
            above = [f"{c.function} ({Path(c.file_path or '?').name})" for c in chain[-depth:]]
            by_chain[" <- ".join(reversed(above))] += frame.time
            return
        for child in frame.children:
            visit(child, (*chain, frame))

    visit(root, ())
    per_query = 1000 / max(queries, 1)
    lines = [f"callers of {function}                     ms/query"]
    for chain, seconds in sorted(by_chain.items(), key=lambda item: -item[1])[:15]:
        lines.append(f"  {seconds * per_query:>7.3f}  {chain}")
    return "\n".join(lines)


def contender_factory(
    name: str, bus: BusKind, settings: Any
) -> Callable[[], AbstractAsyncContextManager[AskOne]]:
    """A factory of the contender ``name`` as an async context manager of ``ask_one``."""
    from ragbus_bench.ragbus_client import ragbus_pipeline

    if name == "ragbus":
        return lambda: ragbus_pipeline(settings)
    retrieve, generate = rag_handlers(settings)
    prefetch = settings.concurrency
    if name == "aiopika":
        from ragbus_bench.anchor_aiopika import aiopika_chain

        return lambda: aiopika_chain(
            settings.amqp_url.get_secret_value(), retrieve, generate, prefetch
        )
    if name == "faststream":
        from ragbus_bench.anchor_faststream import faststream_chain

        return lambda: faststream_chain(
            settings.amqp_url.get_secret_value(), retrieve, generate, prefetch
        )
    from ragbus_bench.anchor_memory import memory_chain

    return lambda: memory_chain(retrieve, generate, prefetch)


async def profiled(
    open_contender: Callable[[], AbstractAsyncContextManager[AskOne]],
    queries: int,
    concurrency: int,
) -> tuple[Any, float]:
    """Run ``queries`` questions on the contender under pyinstrument; returns the
    session and the questions answered per second."""
    from pyinstrument import Profiler

    async with open_contender() as ask_one:
        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        batch = await closed_loop(ask_one, range(queries), concurrency)
        session = profiler.stop()
    answered = len(batch.latencies_s)
    return session, answered / batch.seconds if batch.seconds else 0.0


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, profile the contender, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bus", choices=[b.value for b in BusKind], default="rabbitmq")
    parser.add_argument(
        "--contender",
        choices=["ragbus", "aiopika", "faststream", "memory-anchor"],
        default="ragbus",
    )
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--lm-latency-ms", type=float, default=0.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--html", type=Path, help="also write pyinstrument's HTML report here")
    parser.add_argument(
        "--callers",
        action="append",
        default=[],
        metavar="FUNCTION",
        help="also show where FUNCTION is called from (repeatable)",
    )
    args = parser.parse_args(argv)
    bus = BusKind(args.bus)
    settings = load_settings(
        bus=bus, concurrency=args.concurrency, lm_latency_ms=args.lm_latency_ms
    )
    factory = contender_factory(args.contender, bus, settings)
    session, qps = asyncio.run(profiled(factory, args.queries, args.concurrency))
    from pyinstrument.renderers import HTMLRenderer

    root = session.root_frame(trim_stem=False)
    print(
        f"{args.contender} on {bus.value}: {args.queries} queries, concurrency "
        f"{args.concurrency}, LM latency {args.lm_latency_ms:g} ms: {qps:.1f} q/s under "
        "the profiler"
    )
    print(report(root, args.queries, args.top))
    for function in args.callers:
        print()
        print(callers(root, function, args.queries))
    if args.html is not None:
        args.html.write_text(HTMLRenderer().render(session))
        print(f"\nHTML report: {args.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
