"""Adaptive LM concurrency against fixed concurrency, on a stand-in LM with a capacity.

    .venv/bin/python bench/adaptive.py --seconds 30 --rounds 1

The stand-in LM (tests/lm_server.py) serves ``--capacity`` calls at once, each taking
``--base-ms`` on an idle server and twice that at capacity; one call more is answered
429 with ``Retry-After: 1``. The RAG pipeline runs on the memory bus with 256 questions
outstanding. Contenders, interleaved in rounds: the adaptive limit starting from 4, and
from 200, and a fixed concurrency of 100 (the adaptive limit off, stage concurrency
100). For each: the limit over the last half of the run, calls served per second and
the share answered 429 over the last half, both counted at the server, and the served
rate as a share of the server's capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the stand-in lives in tests/
from tests.adaptive_load import LoadResult, load_settings, run_load
from tests.lm_server import start_lm_server

#: Contender name -> settings it overrides.
CONTENDERS: dict[str, dict[str, Any]] = {
    "adaptive, start 4": {"lm_concurrency_start": 4},
    "adaptive, start 200": {"lm_concurrency_start": 200},
    "fixed 100": {"lm_concurrency_adaptive": False, "concurrency": 100},
}


@dataclass
class Row:
    """One contender's figures in one round."""

    name: str
    limit: tuple[int, int]
    rate: float
    share_of_capacity: float
    refused_share: float


def measure(name: str, result: LoadResult, seconds: float, capacity: float) -> Row:
    """The figures of the last half of a run."""
    start, end = seconds / 2, seconds
    rate = result.rate(start, end)
    return Row(
        name,
        result.limit_range(start, end),
        rate,
        rate / capacity,
        result.refused_share(start, end),
    )


async def main(args: argparse.Namespace) -> None:
    lm = start_lm_server()
    rows: list[Row] = []
    try:
        for _ in range(args.rounds):
            for name, overrides in CONTENDERS.items():
                capacity = lm.set_capacity(args.capacity, args.base_ms / 1000)
                with tempfile.TemporaryDirectory() as tmp:
                    settings = load_settings(Path(tmp), lm, **overrides)
                    result = await run_load(
                        settings, lm, seconds=args.seconds, outstanding=args.outstanding
                    )
                rows.append(measure(name, result, args.seconds, capacity.throughput()))
                print(rows[-1], flush=True)
    finally:
        lm.stop()
    print(f"\ncapacity {args.capacity} calls at once, {args.base_ms} ms idle latency")
    print("| contender | limit (2nd half) | served/s | of capacity | answered 429 |")
    print("|---|---|---|---|---|")
    for name in CONTENDERS:
        mine = [row for row in rows if row.name == name]
        low = min(row.limit[0] for row in mine)
        high = max(row.limit[1] for row in mine)
        rate = statistics.median(row.rate for row in mine)
        share = statistics.median(row.share_of_capacity for row in mine)
        refused = statistics.median(row.refused_share for row in mine)
        limit = f"{low}-{high}" if name != "fixed 100" else "100 (fixed)"
        print(f"| {name} | {limit} | {rate:.1f} | {share:.2f} | {refused:.2%} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each run")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of all contenders")
    parser.add_argument("--capacity", type=int, default=8, help="LM calls served at once")
    parser.add_argument("--base-ms", type=float, default=100.0, help="idle LM latency")
    parser.add_argument("--outstanding", type=int, default=256, help="questions asked at once")
    asyncio.run(main(parser.parse_args()))
