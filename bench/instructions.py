"""Instructions per question, counted by callgrind: robust where a loaded machine makes
wall and CPU times drift.

    valgrind --tool=callgrind --dump-before=getppid --callgrind-out-file=/tmp/cg \\
        .venv/bin/python bench/instructions.py pipeline --queries 200 ragbus nocache
    valgrind --tool=callgrind --dump-before=getppid --callgrind-out-file=/tmp/cg \\
        .venv/bin/python bench/instructions.py generate --queries 300
    .venv/bin/python bench/instructions.py report /tmp/cg --queries 200 ragbus nocache anchor

The measured regions are separated by calls to ``os.getppid()``, and callgrind, told
``--dump-before=getppid``, writes each region to a file of its own (``/tmp/cg.2``,
``/tmp/cg.3``, ...): imports, set-up and warm-up are not counted, every thread is.

- ``pipeline``: the memory-bus pipeline (``Client(run_pipeline=True)``) in each variant
  named (``ragbus``; ``nocache``, ``nodedup``, ``bare``: the result cache, the
  deduplication or both off), then the asyncio anchor with the same handlers, one
  region each, ``--queries`` questions at concurrency 100 after 100 of warm-up.
- ``generate``: region 2 is ``--queries`` calls of the generate handler (DSPy and the
  offline LM), region 3 the offline engine alone on the same LM requests, so their
  difference is what DSPy and the handler around it cost.
- ``report``: instructions per question of each region of a finished run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from ragbus.config import BusKind, load_settings
from ragbus.events import new_event
from ragbus.lm import offline
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus_bench.anchor_memory import memory_chain
from ragbus_bench.handlers import rag_handlers
from ragbus_bench.load import AskOne, closed_loop, question
from ragbus_bench.ragbus_client import ragbus_pipeline

#: Settings of each ragbus variant.
VARIANTS: dict[str, dict[str, Any]] = {
    "ragbus": {},
    "nocache": {"cache_enabled": False},
    "nodedup": {"dedup": False},
    "bare": {"cache_enabled": False, "dedup": False},
}
CONCURRENCY = 100
WARM_UP = 100


def next_region() -> None:
    """End the current region (callgrind dumps it before ``getppid`` runs)."""
    os.getppid()


async def pipeline(variants: list[str], queries: int) -> None:
    """One region per ragbus variant, then one for the asyncio anchor."""
    async with contextlib.AsyncExitStack() as stack:
        asks: list[AskOne] = []
        for name in variants:
            settings = load_settings(bus=BusKind.MEMORY, concurrency=CONCURRENCY, **VARIANTS[name])
            asks.append(await stack.enter_async_context(ragbus_pipeline(settings)))
        retrieve, generate = rag_handlers(load_settings(bus=BusKind.MEMORY))
        asks.append(await stack.enter_async_context(memory_chain(retrieve, generate, CONCURRENCY)))
        for ask in asks:
            await closed_loop(ask, range(WARM_UP), CONCURRENCY)
        next_region()
        for ask in asks:
            await closed_loop(ask, range(1000, 1000 + queries), CONCURRENCY)
            next_region()


async def generate_stage(queries: int) -> None:
    """Region 2: the generate handler; region 3: the offline engine on its requests."""
    retrieve, generate = rag_handlers(load_settings(bus=BusKind.MEMORY))
    requests: list[Any] = []
    answer = offline.answer_request

    def recording(request: Any) -> Any:
        requests.append(request)
        return answer(request)

    offline.answer_request = recording  # the engines look it up on every call
    retrieved = []
    for number in range(WARM_UP + queries):
        query = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=question(number)))
        retrieved += await retrieve(query)
    for event in retrieved[:WARM_UP]:
        await generate(event)
    requests.clear()
    next_region()
    for event in retrieved[WARM_UP:]:
        await generate(event)
    next_region()
    for request in requests:
        answer(request)
    next_region()


def report(out: Path, queries: int, names: list[str]) -> str:
    """Instructions per question of regions 2, 3, ... of the callgrind run ``out``."""
    lines = []
    for number, name in enumerate(names, start=2):
        totals = Path(f"{out}.{number}").read_text().split("\ntotals: ", 1)[1]
        instructions = int(totals.split()[0])
        lines.append(f"{name}: {instructions / queries / 1e6:.3f} M instructions per question")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run a measured workload, or report on a finished run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["pipeline", "generate", "report"])
    parser.add_argument("names", nargs="*", help="variants (pipeline), or the callgrind file")
    parser.add_argument("--queries", type=int, default=200, help="questions per region (200)")
    options = parser.parse_intermixed_args(argv)
    if options.what == "report":
        out, *names = options.names
        print(report(Path(out), options.queries, names))
        return 0
    if options.what == "pipeline":
        unknown = set(options.names) - set(VARIANTS)
        if unknown:
            parser.error(f"unknown variants {sorted(unknown)}: choose from {sorted(VARIANTS)}")
        asyncio.run(pipeline(options.names or ["ragbus"], options.queries))
    else:
        asyncio.run(generate_stage(options.queries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
