"""CPU cost of ragbus's runtime per delivery, without any broker.

    .venv/bin/python bench/overhead.py --queries 2000

Answers the benchmark's questions one at a time (no concurrency, so nothing waits) in
three ways and prints CPU microseconds per query for each:

- ``bare``: what the anchors do per hop: ``json.loads`` + ``Envelope.model_validate``,
  the handler, ``json.dumps`` of the output, for retrieve then generate;
- ``ragbus consumer``: each hop through the stage's ``StageConsumer`` (decode and
  validate, dedup, deadline, result cache and coalescing, retry, breaker, timeout,
  metrics), built by ``Runtime`` from the default settings, on a stub bus that only
  encodes what it is given to publish (``Envelope.encode``);
- ``ragbus consumer, no cache/dedup``: the same with ``RAGBUS_CACHE_ENABLED=false`` and
  ``RAGBUS_DEDUP=false``.

The difference between the first two is the runtime's CPU per query, apart from the
bus and the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ragbus.bus.base import InboundMessage
from ragbus.config import load_settings
from ragbus.events import Envelope, new_event, utc_now
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.pipelines.rag import pipeline as rag
from ragbus.runtime.runner import Runtime
from ragbus_bench.handlers import rag_handlers
from ragbus_bench.load import question
from ragbus_bench.rounds import round_order


class StubBus:
    """Just enough of a bus for a ``Runtime``: publishing encodes and keeps the body."""

    def __init__(self) -> None:
        self.published: list[bytes] = []

    async def publish(self, envelope: Envelope, **options: Any) -> None:
        """Encode ``envelope`` as the real buses do and keep it."""
        self.published.append(envelope.encode())

    def dead_letters(self, stages: Any) -> None:
        """No dead-letter store: nothing fails in this benchmark."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the stub bus has no {name}")


def query(number: int) -> Envelope:
    """The ``number``-th question, with a deadline as ``Client.ask`` sets one."""
    from datetime import timedelta

    return new_event(
        RagEvent.QUERY_RECEIVED,
        QueryReceived(question=question(number)),
        deadline=utc_now() + timedelta(seconds=60),
    )


async def bare(numbers: Sequence[int]) -> float:
    """CPU seconds of the anchors' per-hop work for ``numbers``."""
    retrieve, generate = rag_handlers(load_settings())
    started = time.process_time()
    for number in numbers:
        body = json.dumps(query(number).model_dump(mode="json"))
        for handler in (retrieve, generate):
            event = rag.events.validate(json.loads(body))
            (output,) = await handler(event)
            body = json.dumps(output.model_dump(mode="json"))
    return time.process_time() - started


async def through_runtime(numbers: Sequence[int], **overrides: object) -> float:
    """CPU seconds of ``numbers`` through the stage consumers (settings ``overrides``)."""
    settings = load_settings(**overrides)
    bus = StubBus()
    from ragbus.pipeline import StageContext
    from ragbus.stage_build import build_stage

    stages = [
        build_stage(spec, StageContext(pipeline=rag, stage=spec, settings=settings))
        for spec in rag.stages.values()
    ]
    runtime = Runtime(bus, stages, events=rag.events, settings=settings)  # type: ignore[arg-type]
    consumers: list[Callable[[InboundMessage], Awaitable[None]]] = [
        runtime.consumers[stage.name] for stage in runtime.stages
    ]
    try:
        started = time.process_time()
        for number in numbers:
            body = query(number).encode()
            for stage, consumer in zip(runtime.stages, consumers, strict=True):
                await consumer(InboundMessage(body=body, stage=stage.name))
                body = bus.published.pop()
        return time.process_time() - started
    finally:
        await runtime.guards.close()


async def measure(queries: int, rounds: int = 2) -> list[tuple[str, float]]:
    """CPU microseconds per query of each way: one pass over the questions first (so
    memoized stems and the like are warm for every way), then ``rounds`` rounds,
    forwards then backwards (see ``ragbus_bench.rounds``)."""
    timed = range(queries)
    ways: list[tuple[str, Callable[[Sequence[int]], Awaitable[float]]]] = [
        ("bare (anchors' work)", bare),
        ("ragbus consumer", through_runtime),
        (
            "ragbus consumer, no cache/dedup",
            lambda numbers: through_runtime(numbers, cache_enabled=False, dedup=False),
        ),
    ]
    await bare(timed)
    totals = [0.0] * len(ways)
    for number in range(rounds):
        for index in round_order(len(ways), number):
            totals[index] += await ways[index][1](timed)
    per_query = 1e6 / (queries * rounds)
    return [(name, total * per_query) for (name, _), total in zip(ways, totals, strict=True)]


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", "-n", type=int, default=2000, help="default 2000")
    parser.add_argument("--rounds", type=int, default=2, help="default 2")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.queries, args.rounds))
    base = figures[0][1]
    print(
        f"{args.queries} queries x {args.rounds} rounds, one at a time, "
        "CPU per query (retrieve + generate hops)"
    )
    for name, micros in figures:
        print(f"  {name:<34} {micros:>8.0f} us   (+{micros - base:.0f} us over bare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
