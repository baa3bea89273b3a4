"""What a worker's heartbeats (``ragbus status``) cost.

    .venv/bin/python bench/heartbeat.py --beats 2000 --requests 1000 --rounds 3

Two measurements:

1. CPU per heartbeat: a runtime of the RAG pipeline's two stages (built from the
   default settings, on a memory bus) builds ``--beats`` heartbeats (its counters read
   from its Prometheus registry, the control event made and encoded; publishing it, one
   transient message, is left out), timed with ``time.process_time``; with the default
   interval of 2 s, the share of one core is that time / 2 s.
2. End to end: ``ragbus bench`` on the memory bus with heartbeats off
   (``RAGBUS_HEARTBEAT_INTERVAL_S=0``) and forty times more often than the default
   (0.05 s), interleaved in ``--rounds`` rounds (off, on, on, off, ...), each a fresh
   process of ``--requests`` questions; requests/s of each, summed over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ragbus.bus.memory import MemoryBus
from ragbus.config import load_settings
from ragbus.control import CONTROL_EVENTS, HEARTBEAT
from ragbus.heartbeat import heartbeat_of
from ragbus.pipeline import StageContext
from ragbus.pipelines.rag import pipeline as rag
from ragbus.runtime.runner import Runtime
from ragbus.runtime.stats import StageCounters
from ragbus.stage_build import build_stage
from ragbus_bench.rounds import round_order

#: The heartbeat intervals compared end to end: off, and forty times the default rate.
INTERVALS = {"off": "0", "every 0.05 s": "0.05"}


async def cpu_per_beat(beats: int) -> float:
    """CPU seconds of one heartbeat, averaged over ``beats``."""
    settings = load_settings()
    stages = [
        build_stage(spec, StageContext(pipeline=rag, stage=spec, settings=settings))
        for spec in rag.stages.values()
    ]
    runtime = Runtime(MemoryBus(), stages, events=rag.events, settings=settings)
    counters = StageCounters(runtime)
    try:
        started = time.process_time()
        for _ in range(beats):
            beat = heartbeat_of(counters, app=rag.name, worker_id="bench", interval_s=2.0)
            CONTROL_EVENTS.new(HEARTBEAT, beat).encode()
        return (time.process_time() - started) / beats
    finally:
        await runtime.guards.close()


def bench_once(interval: str, requests: int) -> float:
    """Requests/s of one ``ragbus bench`` process with heartbeats every ``interval``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGBUS_")}
    env["RAGBUS_HEARTBEAT_INTERVAL_S"] = interval
    ragbus = Path(sys.executable).with_name("ragbus")
    command = [str(ragbus), "bench", "--requests", str(requests), "--concurrency", "32"]
    done = subprocess.run(
        [*command, "--json"], env=env, capture_output=True, text=True, check=True, timeout=600
    )
    return float(json.loads(done.stdout)["per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beats", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    per_beat = asyncio.run(cpu_per_beat(options.beats))
    print(
        f"one heartbeat: {per_beat * 1e6:.0f} µs of CPU; at the default 2 s interval, "
        f"{per_beat / 2.0 * 100:.4f} % of one core"
    )
    names = list(INTERVALS)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for number in range(options.rounds):
        for index in round_order(len(names), number):
            name = names[index]
            rates[name].append(bench_once(INTERVALS[name], options.requests))
    for name in names:
        shown = ", ".join(f"{rate:.0f}" for rate in rates[name])
        mean = sum(rates[name]) / len(rates[name])
        print(f"heartbeats {name}: {mean:.0f} requests/s (rounds: {shown})")
    ratio = (sum(rates["every 0.05 s"]) / sum(rates["off"])) if rates["off"] else 0.0
    print(f"ratio, every 0.05 s / off: {ratio:.3f}")


if __name__ == "__main__":
    main()
