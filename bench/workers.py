"""ragbus across processes: 1 ``ragbus worker`` process against 2, same load.

    .venv/bin/python bench/workers.py --queries 5000 --concurrency 100 --lm-latency-ms 0

Starts a pool of 1 and a pool of 2 ``ragbus worker --bus rabbitmq --stages all``
processes, each pool in its own namespace (``RAGBUS_EXCHANGE`` / ``RAGBUS_QUEUE_PREFIX``)
with ``RAGBUS_CONCURRENCY`` = ``--concurrency`` per worker, drives the same load at
each from this process with a ``Client(run_pipeline=False)``, interleaved in rounds,
and prints q/s, p50/p99 and CPU per query (``--json``: the results as JSON). Needs
RabbitMQ at ``RAGBUS_AMQP_URL`` (default ``amqp://guest:guest@127.0.0.1:5672/``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from ragbus.config import BusKind, load_settings
from ragbus_bench.run import render_table
from ragbus_bench.stats import BenchConfig
from ragbus_bench.workers import run_worker_comparison


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the comparison, print the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", "-n", type=int, default=2000, help="default 2000")
    parser.add_argument(
        "--concurrency",
        "-c",
        type=int,
        default=100,
        help="queries in flight, and each worker's per-stage concurrency (default 100)",
    )
    parser.add_argument("--lm-latency-ms", type=float, default=0.0, help="default 0")
    parser.add_argument("--workers", default="1,2", help="comma-separated pool sizes (default 1,2)")
    parser.add_argument(
        "--supervised",
        default="",
        help="comma-separated sizes of pools also run as one `ragbus worker --processes N` "
        "(default none)",
    )
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    counts = [int(part) for part in args.workers.split(",") if part.strip()]
    supervised = [int(part) for part in args.supervised.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        parser.error("--workers needs positive pool sizes, e.g. 1,2")
    settings = load_settings(
        bus=BusKind.RABBITMQ, concurrency=args.concurrency, lm_latency_ms=args.lm_latency_ms
    )
    config = BenchConfig(
        queries=args.queries, concurrency=args.concurrency, lm_latency_ms=args.lm_latency_ms
    )
    results = asyncio.run(
        run_worker_comparison(
            settings, config, counts=counts, rounds=args.rounds, supervised=supervised
        )
    )
    if args.json:
        print(json.dumps([result.as_dict() for result in results], indent=2))
        return 0
    print("\n".join(render_table(results, config)))
    for result in results[1:]:
        if results[0].qps:
            print(f"{result.name} / {results[0].name}: {result.qps / results[0].qps:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
