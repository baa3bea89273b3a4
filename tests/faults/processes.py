"""Second ragbus processes for the tests: a worker, or a one-shot ``ragbus ask``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from ragbus.bus.base import Bus
from ragbus.bus.rabbitmq import RabbitMQBus
from ragbus.config import Settings
from ragbus.events import Envelope

#: The line a worker logs once it consumes; ends with where its /metrics are.
_SERVING = re.compile(r"serving .*? on http://127\.0\.0\.1:(\d+)")


def process_env(settings: Settings, bus: Bus) -> dict[str, str]:
    """The environment giving a ragbus process ``settings``' LM, cache, guards and bus
    (for RabbitMQ: ``bus``'s exchange and queue prefix). ``RAGBUS_*`` variables of this
    process are left out, so only these settings apply."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAGBUS_")}
    values: dict[str, object] = {
        "lm_model": settings.lm_model,
        "lm_api_base": settings.lm_api_base,
        "lm_api_key": settings.lm_api_key.get_secret_value() if settings.lm_api_key else None,
        "cache_url": settings.cache_url.get_secret_value() if settings.cache_url else None,
        "cache_namespace": settings.cache_namespace,
        "dlq_path": settings.dlq_path,
        "stage_timeout_s": settings.stage_timeout_s,
        "shutdown_grace_s": settings.shutdown_grace_s,
        "coalesce_lease_s": settings.coalesce_lease_s,
    }
    if isinstance(bus, RabbitMQBus):
        values.update(
            bus="rabbitmq",
            amqp_url=bus.url,
            exchange=bus.topology.exchange,
            queue_prefix=bus.topology.prefix,
        )
    env.update(
        {
            f"RAGBUS_{name.upper()}": str(value)
            for name, value in values.items()
            if value is not None
        }
    )
    return env


def _command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "ragbus.cli", *arguments]


@dataclass
class WorkerProcess:
    """A running ``ragbus worker`` and the port of its ``/metrics``."""

    process: asyncio.subprocess.Process
    stderr: Path
    metrics_port: int = 0

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    async def metrics(self) -> str:
        """The worker's ``/metrics`` text."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.metrics_port)
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        response = await reader.read()
        writer.close()
        await writer.wait_closed()
        return response.decode(errors="replace").partition("\r\n\r\n")[2]


@contextlib.asynccontextmanager
async def worker_process(
    env: dict[str, str], cwd: Path, *extra: str, start_timeout: float = 30.0
) -> AsyncIterator[WorkerProcess]:
    """Run ``ragbus worker`` until the block ends, then stop it with SIGTERM; it must drain
    and exit 0. Waits until the worker consumes before entering the block."""
    stderr = cwd / f"worker-{os.urandom(4).hex()}.log"
    with stderr.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *_command("worker", "--port", "0", *extra),
            env=env,
            cwd=cwd,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=sink,
        )
    worker = WorkerProcess(process, stderr)
    try:
        async with asyncio.timeout(start_timeout):
            while not (match := _SERVING.search(worker.log())):
                if process.returncode is not None:
                    raise AssertionError(f"the worker exited early:\n{worker.log()}")
                await asyncio.sleep(0.05)
        worker.metrics_port = int(match.group(1))
        yield worker
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise AssertionError(
                    f"the worker did not stop on SIGTERM:\n{worker.log()}"
                ) from None
    assert process.returncode == 0, f"the worker exited {process.returncode}:\n{worker.log()}"


async def ask_in_new_process(
    env: dict[str, str], cwd: Path, question: str, *, timeout: float = 30.0
) -> Envelope:
    """``ragbus ask --json`` in a new process (the memory bus runs the whole pipeline
    there); returns its answer event."""
    process = await asyncio.create_subprocess_exec(
        *_command("ask", question, "--json", "--timeout", f"{timeout:g}"),
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout + 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, stderr.decode(errors="replace")
    return Envelope.model_validate(json.loads(stdout))


def metric_value(text: str, name: str, **labels: str) -> float:
    """A sample's value in Prometheus text ``text`` (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if not sample.startswith(name):
            continue
        found_name, _, found_labels = sample.partition("{")
        found = ",".join(sorted(found_labels.rstrip("}").split(","))) if found_labels else ""
        if found_name == name and found == wanted:
            return float(value)
    return 0.0
