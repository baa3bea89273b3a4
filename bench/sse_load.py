"""Load check of the gateway's streaming: many concurrent SSE clients on one gateway process.

Starts ``ragbus serve`` (memory bus, offline LM with a simulated latency, no result cache)
on a free port of 127.0.0.1 as a separate process, asks one question alone for a
baseline, then opens ``--clients`` ``POST /v1/ask/stream`` streams at once, each with a
different question, and reports time to first token (TTFT), tokens per second per
stream and in all, and time to the answer. Everything is bounded: one round of streams,
a timeout per stream, and the gateway is stopped at the end.

    .venv/bin/python bench/sse_load.py --clients 200 --lm-latency-ms 500
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


async def run(
    clients: int, lm_latency_ms: float, timeout: float, chunk_ms: float
) -> dict[str, Any]:
    """Start a gateway, measure one stream alone and then ``clients`` at once; its
    generate stage gathers the tokens of ``chunk_ms`` into one event."""
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="ragbus-sse-load-")
    environment = {
        **os.environ,
        "RAGBUS_BUS": "memory",
        "RAGBUS_LM_LATENCY_MS": str(lm_latency_ms),
        "RAGBUS_CONCURRENCY": str(max(clients, 16)),
        "RAGBUS_CACHE_ENABLED": "false",
        "RAGBUS_DLQ_PATH": os.path.join(workdir, "dlq.sqlite3"),
        # every client comes from 127.0.0.1: one client, as far as the limits go
        "RAGBUS_GATEWAY_MAX_STREAMS": str(max(clients, 16)),
        "RAGBUS_GATEWAY_MAX_PER_CLIENT": str(max(clients, 16)),
        "RAGBUS_GATEWAY_RATE_LIMIT": "",
        "RAGBUS_STREAM_CHUNK_MS": str(chunk_ms),
    }
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "ragbus.cli", "serve", "--port", str(port)),
        env=environment,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout=timeout + 10,
            limits=limits,
            trust_env=False,
        ) as http:
            await _wait_ready(http, process)
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
            started = time.perf_counter()
            streams = await asyncio.gather(*(_stream(http, q, timeout) for q in questions))
            loaded = _summary(list(streams), time.perf_counter() - started)
            loaded["streams_caught_up"] = int(await _caught_up(http) - caught_up_before)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
    return {
        "command": " ".join(
            [
                "bench/sse_load.py",
                f"--clients {clients}",
                f"--lm-latency-ms {lm_latency_ms:g}",
                f"--chunk-ms {chunk_ms:g}",
            ]
        ),
        "machine": _machine(),
        "lm_latency_ms": lm_latency_ms,
        "chunk_ms": chunk_ms,
        "alone": baseline,
        "loaded": loaded,
    }


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
        "--chunk-ms",
        type=float,
        default=Settings.model_fields["stream_chunk_ms"].default,
        help="RAGBUS_STREAM_CHUNK_MS of the gateway (default: its default; 0: one token "
        "event per LM delta)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    arguments = parser.parse_args()
    if not 1 <= arguments.clients <= 2000:
        parser.error("--clients must be 1..2000")
    results = asyncio.run(
        run(arguments.clients, arguments.lm_latency_ms, arguments.timeout, arguments.chunk_ms)
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
        )


if __name__ == "__main__":
    main()
