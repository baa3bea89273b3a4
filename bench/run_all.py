"""Run the whole benchmark suite and write its figures into docs/BENCHMARKS.md.

    .venv/bin/python bench/run_all.py                 # everything, about 10 minutes
    .venv/bin/python bench/run_all.py --queries 500 --output /tmp/BENCHMARKS.md   # quick

Steps, each a real command run as a subprocess (its exact command line goes into the
report): the memory-bus benchmark and the RabbitMQ benchmark, each with LM latency 0
and 200 ms, then 1 worker process against 2 and against one ``ragbus worker
--processes 2`` (LM latency 0 and 200 ms), then the SSE time to first token of 200
clients (memory bus with and without token chunks, RabbitMQ with 1 and 2 gateway
processes), then the start time of ``ragbus`` commands (bench/cli_start.py). The generated
section of the output file (between the ``bench:results`` markers) is replaced; the
text around it is kept. The raw results go to ``bench/results/latest.json``.

Needs RabbitMQ at ``RAGBUS_AMQP_URL`` (default ``amqp://guest:guest@127.0.0.1:5672/``)
and faststream[rabbit] (the dev extra).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from ragbus.config import BusKind, load_settings
from ragbus_bench.cli_start import StartTime
from ragbus_bench.cli_start import render as render_start_times
from ragbus_bench.machine import broker_version, load_average, machine_facts
from ragbus_bench.report import BEGIN, END, Run, render_section, splice
from ragbus_bench.stats import BenchConfig, BenchResult

ROOT = Path(__file__).resolve().parent.parent

#: SSE clients streaming at once, and the LM latency spread over their deltas, in the
#: ``sse`` step (issue 15: time to first token p99 under 0.5 s at 200 clients).
SSE_CLIENTS = 200
SSE_LM_MS = 500

#: Seconds one step may take before it is stopped and reported as failed.
STEP_TIMEOUT_S = 600

#: The start of a new docs/BENCHMARKS.md; the hand-written analysis goes around the
#: generated section.
NEW_DOCUMENT = f"""# Benchmarks

Written by `bench/run_all.py`; every figure below comes from the command shown above
it.

{BEGIN}
{END}
"""


@dataclass(frozen=True)
class Step:
    """One command of the suite.

    Parameters:
        name: ``memory``, ``rabbitmq``, ``workers`` or ``sse`` (what ``--steps``
            selects).
        title: the heading of its run in the report.
        argv: the command, relative to the repository (first item run from ``.venv/bin``
            when it is ``ragbus``, else with this Python).
        bus: the bus ragbus runs on.
        config: queries, concurrency, LM latency.
        workers: a comparison of worker pools (default False).
    """

    name: str
    title: str
    argv: tuple[str, ...]
    bus: BusKind
    config: BenchConfig
    workers: bool = False

    @property
    def command(self) -> str:
        """The command as it is shown in the report."""
        shown = self.argv if self.argv[0] == "ragbus" else (".venv/bin/python", *self.argv)
        return shlex.join(shown)

    def executable(self) -> list[str]:
        """The command as it is run."""
        if self.argv[0] == "ragbus":
            return [str(Path(sys.executable).with_name("ragbus")), *self.argv[1:]]
        return [sys.executable, *self.argv]


def suite(queries: int, concurrency: int) -> list[Step]:
    """The suite's steps with ``queries`` questions at ``concurrency``."""
    steps = []
    load = ("--queries", str(queries), "--concurrency", str(concurrency))
    for latency in (0, 200):
        config = BenchConfig(queries=queries, concurrency=concurrency, lm_latency_ms=latency)
        for bus, label in ((BusKind.MEMORY, "Memory bus"), (BusKind.RABBITMQ, "RabbitMQ")):
            argv = ("bench/compare.py", "--bus", bus.value, *load)
            argv += ("--lm-latency-ms", str(latency), "--json")
            title = f"{label}, LM latency {latency} ms"
            steps.append(Step(bus.value, title, argv, bus, config))
    for latency in (0, 200):
        config = BenchConfig(queries=queries, concurrency=concurrency, lm_latency_ms=latency)
        argv = ("bench/workers.py", *load, "--lm-latency-ms", str(latency), "--json")
        argv += ("--supervised", "2")
        title = f"Worker processes, 1 against 2 (and `--processes 2`), LM latency {latency} ms"
        steps.append(Step("workers", title, argv, BusKind.RABBITMQ, config, workers=True))
    sse = BenchConfig(queries=SSE_CLIENTS, concurrency=SSE_CLIENTS, lm_latency_ms=SSE_LM_MS)
    argv = ("bench/sse_load.py", "--compare", "--clients", str(SSE_CLIENTS))
    argv += ("--lm-latency-ms", str(SSE_LM_MS), "--json")
    title = f"SSE time to first token, {SSE_CLIENTS} clients, LM {SSE_LM_MS} ms (p50/p99: TTFT)"
    steps.append(Step("sse", title, argv, BusKind.RABBITMQ, sse, workers=True))
    cli = ("bench/cli_start.py", "--json")
    once = BenchConfig(queries=1, concurrency=1, lm_latency_ms=0)  # each command alone
    steps.append(Step("cli", "Start time of ragbus commands", cli, BusKind.MEMORY, once))
    order = {"memory": 0, "rabbitmq": 1, "workers": 2, "sse": 3, "cli": 4}
    return sorted(steps, key=lambda step: (order[step.name], step.config.lm_latency_ms))


def run_step(step: Step) -> Run:
    """Run ``step`` and read its JSON results (or record why it failed)."""
    run = Run(step.title, step.command, step.bus, step.config, workers=step.workers)
    run.load_before = load_average()
    print(f"[{datetime.now(UTC):%H:%M:%S}] {step.command}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        done = subprocess.run(
            step.executable(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        run.error = f"timed out after {STEP_TIMEOUT_S} s"
    else:
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            run.error = f"exit {done.returncode}: {lines[-1] if lines else 'no output'}"
        elif step.name == "cli":
            times = [StartTime(**item) for item in json.loads(done.stdout)]
            run.table = render_start_times(times)
        else:
            run.results = [BenchResult.from_dict(item) for item in json.loads(done.stdout)]
    run.seconds = time.perf_counter() - started
    run.load_after = load_average()
    outcome = run.error or ", ".join(f"{r.name} {r.qps:.1f} q/s" for r in run.results)
    outcome = outcome or f"{len(run.table) - 2} commands timed"
    print(f"    {outcome} ({run.seconds:.0f} s)", file=sys.stderr, flush=True)
    return run


def run_with_retries(step: Step, retries: int) -> Run:
    """Run ``step``; while it fails (the command, or questions in it: e.g. the broker
    was restarted under it), run it again, up to ``retries`` more times. Earlier
    attempts are listed in the run's notes."""
    earlier: list[str] = []
    while True:
        run = run_step(step)
        if not run.failed or len(earlier) >= retries:
            run.notes = earlier + run.notes
            return run
        failures = run.error or ", ".join(
            f"{result.name}: {result.errors} failed" for result in run.results if result.errors
        )
        earlier.append(f"attempt {len(earlier) + 1} discarded and run again ({failures})")


def main(argv: list[str] | None = None) -> int:
    """Run the selected steps and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", "-n", type=int, default=5000, help="default 5000")
    parser.add_argument("--concurrency", "-c", type=int, default=100, help="default 100")
    parser.add_argument(
        "--steps",
        default="memory,rabbitmq,workers,sse,cli",
        help="which steps to run (default memory,rabbitmq,workers,sse,cli)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "docs" / "BENCHMARKS.md",
        help="the report to update (default docs/BENCHMARKS.md)",
    )
    parser.add_argument(
        "--json-output",
        type=Path,
        default=ROOT / "bench" / "results" / "latest.json",
        help="where the raw results go (default bench/results/latest.json)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="runs of a failed step again, e.g. after a broker restart (default 1)",
    )
    args = parser.parse_args(argv)
    wanted = {name.strip() for name in args.steps.split(",") if name.strip()}
    steps = [step for step in suite(args.queries, args.concurrency) if step.name in wanted]
    if not steps:
        parser.error("--steps selects nothing: use memory, rabbitmq, workers, sse and/or cli")
    started = datetime.now(UTC)
    clock = time.perf_counter()
    machine = machine_facts()
    machine["RabbitMQ"] = asyncio.run(broker_version(load_settings().amqp_url.get_secret_value()))
    runs = [run_with_retries(step, args.retries) for step in steps]
    minutes = (time.perf_counter() - clock) / 60
    section = render_section(
        runs, machine, started=started.strftime("%Y-%m-%d %H:%M"), minutes=minutes
    )
    document = args.output.read_text() if args.output.exists() else NEW_DOCUMENT
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(splice(document, section))
    args.json_output.parent.mkdir(parents=True, exist_ok=True)
    raw = {
        "started": started.isoformat(),
        "machine": machine,
        "runs": [
            {**asdict(run), "results": [r.as_dict() for r in run.results], "bus": run.bus.value}
            for run in runs
        ],
    }
    args.json_output.write_text(json.dumps(raw, indent=2, default=str) + "\n")
    print(f"wrote {os.path.relpath(args.output)} and {os.path.relpath(args.json_output)}")
    return 1 if any(run.failed for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
