"""Load check of the gateway's streaming: many concurrent SSE clients on one gateway.

Starts ``ragbus serve`` (memory bus, offline LM with a simulated latency spread over its
streamed deltas, no result cache) on a free port of 127.0.0.1 as a separate process,
asks one question alone for a baseline, then opens ``--clients`` ``POST /v1/ask/stream``
streams at once, each with a different question, and reports time to first token
(TTFT), tokens per second per stream and in all, time to the answer, and CPU per stream
of the processes started. With ``--bus rabbitmq`` a ``ragbus worker`` (one process per
core) does the work and the gateway runs ``--gateway-workers`` processes. Everything is
bounded: one round of streams, a timeout per stream, every process stopped at the end.

    .venv/bin/python bench/sse_load.py --clients 200 --lm-latency-ms 500
    .venv/bin/python bench/sse_load.py --bus rabbitmq --gateway-workers 2
    .venv/bin/python bench/sse_load.py --compare --rounds 2   # the contenders below
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from ragbus.config import Settings
from ragbus_bench.cpu import total_cpu_seconds
from ragbus_bench.namespace import Namespace, delete_namespace
from ragbus_bench.stats import BenchResult
from ragbus_bench.workers import child_pids

QUESTIONS = (
    "How does ragbus handle a failed event?",
    "What does a dead letter record?",
    "How are transient failures retried?",
    "What happens when the circuit breaker opens?",
    "How does the shared cache work?",
)


@dataclass
class Stream:
    """What one SSE client saw, in seconds from its request."""

    first_token: float | None = None
    last_token: float | None = None
    answer: float | None = None
    tokens: int = 0
    error: str = ""
    events: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float | None:
        """Tokens per second from the first token to the last."""
        if self.first_token is None or self.last_token is None or self.tokens < 2:
            return None
        span = self.last_token - self.first_token
        return (self.tokens - 1) / span if span > 0 else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _stream(http: httpx.AsyncClient, question: str, timeout: float) -> Stream:
    seen = Stream()
    started = time.perf_counter()
    try:
        async with http.stream(
            "POST", "/v1/ask/stream", json={"question": question, "timeout": timeout}
        ) as response:
            if response.status_code != 200:
                seen.error = f"HTTP {response.status_code}"
                return seen
            async for line in response.aiter_lines():
                if not line.startswith("event:"):
                    continue
                name = line[6:].strip()
                now = time.perf_counter() - started
                if name == "token":
                    seen.tokens += 1
                    seen.first_token = seen.first_token or now
                    seen.last_token = now
                elif name == "answer":
                    seen.answer = now
                elif name == "error":
                    seen.error = "error event"
    except httpx.HTTPError as exc:
        seen.error = type(exc).__name__
    return seen


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _summary(streams: list[Stream], wall_s: float) -> dict[str, Any]:
    ok = [s for s in streams if not s.error and s.answer is not None]
    ttft = [s.first_token for s in ok if s.first_token is not None]
    answer = [s.answer for s in ok if s.answer is not None]
    rates = [r for s in ok if (r := s.tokens_per_s) is not None]
    tokens = sum(s.tokens for s in ok)
    return {
        "streams": len(streams),
        "ok": len(ok),
        "errors": len(streams) - len(ok),
        "wall_s": round(wall_s, 3),
        "ttft_ms": {
            q: round(_percentile(ttft, p) * 1000, 1)
            for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
        }
        if ttft
        else {},
        "answer_ms": {
            q: round(_percentile(answer, p) * 1000, 1) for q, p in (("p50", 50), ("p99", 99))
        }
        if answer
        else {},
        "tokens_per_stream": round(tokens / len(ok), 1) if ok else 0,
        "stream_tokens_per_s_p50": round(statistics.median(rates), 1) if rates else None,
        "total_tokens_per_s": round(tokens / wall_s, 1) if wall_s else None,
    }


async def _caught_up(http: httpx.AsyncClient) -> float:
    """The gateway's count of answers whose tokens fell short (dropped under load)."""
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("ragbus_gateway_tokens_caught_up_total "):
            return float(line.split()[1])
    return 0.0


async def _wait_ready(http: httpx.AsyncClient, process: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(60):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"the gateway exited with {process.returncode}")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


async def _until_answered(http: httpx.AsyncClient, timeout: float) -> None:
    """Ask until a stream ends with an answer: on RabbitMQ the gateway is ready before
    the workers consume (until then a question is refused as unroutable)."""
    async with asyncio.timeout(120):
        while (await _stream(http, QUESTIONS[0], timeout)).answer is None:
            await asyncio.sleep(0.5)


async def _start(
    arguments: list[str], environment: dict[str, str], workdir: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "ragbus.cli", *arguments),
        env=environment,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()


def _tree_cpu_s(processes: list[asyncio.subprocess.Process]) -> float | None:
    """CPU seconds so far of ``processes`` and their children."""
    pids = [process.pid for process in processes]
    return total_cpu_seconds(pids + [child for pid in pids for child in child_pids(pid)])


async def run(
    clients: int,
    lm_latency_ms: float,
    timeout: float,
    chunk_ms: float,
    bus: str = "memory",
    gateway_workers: int = 1,
) -> dict[str, Any]:
    """Start a gateway, measure one stream alone and then ``clients`` at once; its
    generate stage gathers the tokens of ``chunk_ms`` into one event. On ``rabbitmq``
    the gateway runs ``gateway_workers`` processes in front of a ``ragbus worker`` (one
    process per core), in a namespace of their own."""
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="ragbus-sse-load-")
    environment = {
        **os.environ,
        "RAGBUS_BUS": bus,
        "RAGBUS_LM_LATENCY_MS": str(lm_latency_ms),
        "RAGBUS_CONCURRENCY": str(max(clients, 16)),
        "RAGBUS_CACHE_ENABLED": "false",
        "RAGBUS_DLQ_PATH": os.path.join(workdir, "dlq.sqlite3"),
        # every client comes from 127.0.0.1: one client, as far as the limits go
        "RAGBUS_GATEWAY_MAX_STREAMS": str(max(clients, 16)),
        "RAGBUS_GATEWAY_MAX_PER_CLIENT": str(max(clients, 16)),
        "RAGBUS_GATEWAY_RATE_LIMIT": "",
        "RAGBUS_STREAM_CHUNK_MS": str(chunk_ms),
        "RAGBUS_STREAM_TOKENS": "true",
    }
    namespace = Namespace.fresh("sse")
    processes = []
    if bus == "rabbitmq":
        environment.update(RAGBUS_EXCHANGE=namespace.exchange, RAGBUS_QUEUE_PREFIX=namespace.prefix)
        processes.append(await _start(["worker", "--port", "-1"], environment, workdir))
    gateway = ["serve", "--port", str(port), "--workers", str(gateway_workers)]
    process = await _start(gateway, environment, workdir)
    processes.append(process)
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout=timeout + 10,
            limits=limits,
            trust_env=False,
        ) as http:
            await _wait_ready(http, process)
            await _until_answered(http, timeout)
            for question in QUESTIONS:  # warm up
                await _stream(http, question, timeout)
            started = time.perf_counter()
            alone = [await _stream(http, f"{QUESTIONS[0]} (alone)", timeout)]
            baseline = _summary(alone, time.perf_counter() - started)
            questions = [
                f"{QUESTIONS[number % len(QUESTIONS)]} (client {number})"
                for number in range(clients)
            ]
            caught_up_before = await _caught_up(http)
            cpu_before = _tree_cpu_s(processes)
            started = time.perf_counter()
            streams = await asyncio.gather(*(_stream(http, q, timeout) for q in questions))
            loaded = _summary(list(streams), time.perf_counter() - started)
            cpu_after = _tree_cpu_s(processes)
            if cpu_before is not None and cpu_after is not None:
                loaded["cpu_ms_per_stream"] = round((cpu_after - cpu_before) * 1000 / clients, 2)
            if gateway_workers == 1:  # else: the count of whichever process answers
                loaded["streams_caught_up"] = int(await _caught_up(http) - caught_up_before)
    finally:
        for started_process in reversed(processes):
            await _stop(started_process)
        if bus == "rabbitmq":
            url = environment.get("RAGBUS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
            await delete_namespace(url, namespace.exchange, namespace.ragbus_queues())
    return {
        "command": " ".join(
            [
                "bench/sse_load.py",
                f"--clients {clients}",
                f"--lm-latency-ms {lm_latency_ms:g}",
                f"--chunk-ms {chunk_ms:g}",
                f"--bus {bus}",
                f"--gateway-workers {gateway_workers}",
            ]
        ),
        "machine": _machine(),
        "lm_latency_ms": lm_latency_ms,
        "chunk_ms": chunk_ms,
        "bus": bus,
        "gateway_workers": gateway_workers,
        "alone": baseline,
        "loaded": loaded,
    }


#: The contenders of ``--compare``: bus, gateway processes, chunk time (ms).
COMPARED: tuple[tuple[str, int, float], ...] = (
    ("memory", 1, 0.0),
    ("memory", 1, Settings.model_fields["stream_chunk_ms"].default),
    ("rabbitmq", 1, Settings.model_fields["stream_chunk_ms"].default),
    ("rabbitmq", 2, Settings.model_fields["stream_chunk_ms"].default),
)


def contender_name(bus: str, gateway_workers: int, chunk_ms: float) -> str:
    """A contender of ``--compare`` as named in results."""
    processes = f"{gateway_workers} gateway process{'es' if gateway_workers > 1 else ''}"
    workers = ", `ragbus worker` pool" if bus == "rabbitmq" else ""
    return f"SSE {bus}: {processes}{workers}, chunks {chunk_ms:g} ms"


async def compare(
    clients: int, lm_latency_ms: float, timeout: float, rounds: int
) -> list[BenchResult]:
    """Each contender of :data:`COMPARED` in ``rounds`` rounds (the order rotates per
    round); a result per contender whose p50/p99 are the TTFT medians over the rounds."""
    seen: dict[tuple[str, int, float], list[dict[str, Any]]] = {c: [] for c in COMPARED}
    for round_number in range(rounds):
        shift = round_number % len(COMPARED)
        for contender in COMPARED[shift:] + COMPARED[:shift]:
            bus, gateway_workers, chunk_ms = contender
            result = await run(clients, lm_latency_ms, timeout, chunk_ms, bus, gateway_workers)
            seen[contender].append(result["loaded"])
    results = []
    for contender, runs in seen.items():
        ttft = [row["ttft_ms"] for row in runs if row["ttft_ms"]]
        cpu = [row["cpu_ms_per_stream"] for row in runs if "cpu_ms_per_stream" in row]
        results.append(
            BenchResult(
                name=contender_name(*contender),
                queries=clients,
                seconds=statistics.median(row["wall_s"] for row in runs),
                p50_ms=statistics.median(t["p50"] for t in ttft) if ttft else 0.0,
                p99_ms=statistics.median(t["p99"] for t in ttft) if ttft else 0.0,
                errors=max(row["errors"] for row in runs),
                cpu_s=statistics.median(cpu) * clients / 1000 if cpu else None,
            )
        )
    return results


def _machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in cpuinfo
                    if line.startswith("model name")
                ),
                "",
            )
    except OSError:
        pass
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores {model or platform.processor()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}; "
        f"load average before the run {load}"
    )


def main() -> None:
    """Parse the arguments, run the check, print the results (JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200, help="concurrent SSE streams")
    parser.add_argument(
        "--lm-latency-ms", type=float, default=500.0, help="simulated latency of each LM call"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per stream")
    parser.add_argument(
        "--bus",
        choices=("memory", "rabbitmq"),
        default="memory",
        help="memory (default: the pipeline runs in the gateway) or rabbitmq (a `ragbus "
        "worker` pool does; RAGBUS_AMQP_URL)",
    )
    parser.add_argument(
        "--gateway-workers",
        type=int,
        default=1,
        help="`ragbus serve --workers` (default 1; more needs --bus rabbitmq)",
    )
    parser.add_argument(
        "--chunk-ms",
        type=float,
        default=Settings.model_fields["stream_chunk_ms"].default,
        help="RAGBUS_STREAM_CHUNK_MS of the gateway (default: its default; 0: one token "
        "event per LM delta)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="run every contender of COMPARED (this --chunk-ms and --gateway-workers are "
        "ignored) in --rounds interleaved rounds; with --json, one result per contender "
        "whose p50/p99 are TTFT",
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds of --compare (default 1)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    arguments = parser.parse_args()
    if arguments.compare:
        compared = asyncio.run(
            compare(arguments.clients, arguments.lm_latency_ms, arguments.timeout, arguments.rounds)
        )
        if arguments.json:
            print(json.dumps([result.as_dict() for result in compared], indent=2))
            return
        for result in compared:
            print(
                f"{result.name}: TTFT p50 {result.p50_ms:.0f} ms, p99 {result.p99_ms:.0f} ms, "
                f"{result.errors} failed, CPU {result.cpu_ms_per_query or 0:.1f} ms/stream"
            )
        return
    if not 1 <= arguments.clients <= 2000:
        parser.error("--clients must be 1..2000")
    if arguments.gateway_workers > 1 and arguments.bus == "memory":
        parser.error("--gateway-workers > 1 needs --bus rabbitmq")
    results = asyncio.run(
        run(
            arguments.clients,
            arguments.lm_latency_ms,
            arguments.timeout,
            arguments.chunk_ms,
            arguments.bus,
            arguments.gateway_workers,
        )
    )
    if arguments.json:
        print(json.dumps(results, indent=2))
        return
    print(f"$ {results['command']}\n{results['machine']}")
    for label in ("alone", "loaded"):
        row = results[label]
        print(
            f"{label:>6}: {row['ok']}/{row['streams']} ok, TTFT {row['ttft_ms']}, "
            f"answer {row['answer_ms']}, {row['tokens_per_stream']} tokens/stream, "
            f"{row['stream_tokens_per_s_p50']} tokens/s per stream (p50), "
            f"{row['total_tokens_per_s']} tokens/s in all, wall {row['wall_s']} s"
            + (f", {row['streams_caught_up']} caught up" if "streams_caught_up" in row else "")
            + (f", {row['cpu_ms_per_stream']} CPU ms/stream" if "cpu_ms_per_stream" in row else "")
        )


if __name__ == "__main__":
    main()
