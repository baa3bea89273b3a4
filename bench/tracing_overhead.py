"""CPU cost of tracing per question: off (nothing configured), on but not sampled, on.

    .venv/bin/python bench/tracing_overhead.py --queries 300 --rounds 4

Asks the benchmark's questions one at a time through ``Client.ask`` on the memory bus
(every stage in this process, the result cache off so each question is computed) and
prints CPU microseconds per question for each way of tracing:

- ``off``: no ``OTEL_*`` variable, no tracer provider: what every ragbus process does
  unless told to trace; each hook is one check of a flag;
- ``sdk, not sampled``: an SDK tracer provider whose sampler records nothing
  (``OTEL_TRACES_SAMPLER=always_off``): context is still made and propagated;
- ``sdk, recorded``: every span recorded (7 per question) and handed to a batch
  processor whose exporter drops them (the cost of exporting is the collector's
  network, not ragbus's).

The ways are interleaved in rounds (A B C, C B A, ...) so the machine's drift hits
each alike. It also times the ``off`` check of one hook alone, in nanoseconds, since
its share of a question is below what the interleaved rounds can resolve; the log
fields a stage keeps for its log lines (``observe``) are timed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import timeit
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from ragbus.client import Client
from ragbus.config import load_settings
from ragbus.events import new_event
from ragbus.observability import tracing
from ragbus.observability.event_context import observe
from ragbus_bench.load import question
from ragbus_bench.rounds import round_order


class DroppingExporter(SpanExporter):
    """Takes every batch and drops it: the SDK's whole cost, without a network."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def use_provider(provider: trace.TracerProvider | None) -> None:
    """Make ``provider`` the global one (None: none, as without ``OTEL_*``). The API
    sets its global once per process; a benchmark comparing providers swaps it."""
    trace._TRACER_PROVIDER = provider  # type: ignore[attr-defined]
    tracing.refresh()


async def cpu_per_question(client: Client, numbers: Sequence[int]) -> float:
    """CPU seconds to answer ``numbers``, one at a time."""
    started = time.process_time()
    for number in numbers:
        await client.ask(question(number), timeout=30)
    return time.process_time() - started


def off_hooks_ns() -> tuple[float, float]:
    """Nanoseconds, with tracing off, of one publish hook (``publishing``) and of one
    stage's hook (``observe``: the skipped span and the log fields)."""
    use_provider(None)
    event = new_event("query_received", {"question": "why?"})

    def publish_hook() -> None:
        with tracing.publishing(event, "ragbus-memory"):
            pass

    def stage_hook() -> None:
        with observe("retrieve", event, "worker"):
            pass

    calls = 200_000
    return tuple(  # type: ignore[return-value]
        min(timeit.repeat(hook, number=calls, repeat=5)) / calls * 1e9
        for hook in (publish_hook, stage_hook)
    )


async def measure(queries: int, rounds: int) -> tuple[list[tuple[str, float]], int]:
    """CPU microseconds per question of each way, and the spans the recorded way made."""
    exporter = DroppingExporter()
    recorded = TracerProvider()
    recorded.add_span_processor(BatchSpanProcessor(exporter))
    ways: list[tuple[str, trace.TracerProvider | None]] = [
        ("off (no OTEL_* set)", None),
        ("sdk, not sampled", TracerProvider(sampler=ALWAYS_OFF)),
        ("sdk, recorded (spans dropped)", recorded),
    ]
    settings = load_settings(cache_enabled=False)
    totals = [0.0] * len(ways)
    async with Client(settings) as client:
        for _, provider in ways:  # warm up each way: DSPy, the index, the tracers
            use_provider(provider)
            await cpu_per_question(client, range(20))
        for number in range(rounds):
            for index in round_order(len(ways), number):
                use_provider(ways[index][1])
                offset = (number * len(ways) + index) * queries
                totals[index] += await cpu_per_question(client, range(offset, offset + queries))
    use_provider(None)
    recorded.force_flush()
    per_question = 1e6 / (queries * rounds)
    figures = [(name, total * per_question) for (name, _), total in zip(ways, totals, strict=True)]
    return figures, exporter.spans


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", "-n", type=int, default=300, help="per round (300)")
    parser.add_argument("--rounds", type=int, default=4, help="default 4")
    args = parser.parse_args(argv)
    figures, spans = asyncio.run(measure(args.queries, args.rounds))
    base = figures[0][1]
    print(
        f"{args.queries} questions x {args.rounds} rounds per way, one at a time, memory "
        "bus, CPU per question"
    )
    for name, micros in figures:
        print(f"  {name:<32} {micros:>8.0f} us   ({micros / base:.3f}x off)")
    answered = args.queries * args.rounds + 20
    print(f"  spans recorded per question: {spans / answered:.1f}")
    publish_ns, stage_ns = off_hooks_ns()
    # per question: 3 publishes, 2 stages, and the retrieval and LM hooks (a check each)
    hooks_us = (4 * publish_ns + 2 * stage_ns + 100) / 1000
    print(
        f"  hooks with tracing off: {publish_ns:.0f} ns per publish, {stage_ns:.0f} ns per "
        f"stage: {hooks_us:.1f} us per question ({hooks_us / base:.2%} of it)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
