"""ragbus beside its hand-written anchors, on one bus, interleaved in rounds.

    .venv/bin/python bench/compare.py --bus memory --queries 5000 --concurrency 100
    .venv/bin/python bench/compare.py --bus rabbitmq --lm-latency-ms 200 --json

On the memory bus the anchor is a chain of ``asyncio.Queue``s; on RabbitMQ a raw
aio-pika chain and a FastStream chain (faststream[rabbit], the dev extra), all with the
same handlers and durability. Ratios within one run are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging

from ragbus.config import BusKind, load_settings
from ragbus_bench.run import BenchConfig, render_results, run_benchmarks


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the comparison and print its table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bus", choices=[kind.value for kind in BusKind], default="memory")
    parser.add_argument("--queries", "-n", type=int, default=2000, help="default 2000")
    parser.add_argument(
        "--concurrency", "-c", type=int, default=100, help="in flight and per stage (100)"
    )
    parser.add_argument("--lm-latency-ms", type=float, default=0.0, help="default 0")
    parser.add_argument(
        "--no-anchor", action="store_true", help="run ragbus alone, without the anchors"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings(
        bus=options.bus, lm_latency_ms=options.lm_latency_ms, concurrency=options.concurrency
    )
    config = BenchConfig(
        queries=options.queries,
        concurrency=options.concurrency,
        lm_latency_ms=options.lm_latency_ms,
    )
    results = asyncio.run(run_benchmarks(settings, config, anchor=not options.no_anchor))
    if options.json:
        print(json.dumps([result.as_dict() for result in results], indent=2))
    else:
        print(render_results(results, config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
