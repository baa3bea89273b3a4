"""``ragbus serve`` as its own process, as a user runs it: started on a free port,
waited for until ``/readyz`` answers, stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    """This process's environment without ``RAGBUS_`` variables, on the memory bus with a
    dead-letter file in ``tmp_path``, and ``settings`` (``RAGBUS_...`` names) on top."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RAGBUS_")}
    environment.update(
        RAGBUS_BUS="memory",
        RAGBUS_DLQ_PATH=str(tmp_path / "dlq.sqlite3"),
        LITELLM_LOCAL_MODEL_COST_MAP="true",
    )
    environment.update(settings)
    return environment


@dataclass
class Served:
    """A running ``ragbus serve``: its base URL (on 127.0.0.1) and its process."""

    base: str
    port: int
    process: asyncio.subprocess.Process

    async def stop(self, timeout: float = 30.0) -> tuple[int, str]:
        """SIGTERM, then its exit code and everything it wrote."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), timeout)
        assert self.process.stdout is not None
        return code, (await self.process.stdout.read()).decode(errors="replace")


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, *arguments: str, host: str = "127.0.0.1", **settings: str
) -> AsyncIterator[Served]:
    """Run ``ragbus serve --host HOST --port <free> ARGUMENTS`` in ``tmp_path`` with
    ``settings`` until the block ends (then SIGTERM); yields once ``/readyz`` is 200."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ragbus.cli",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        *arguments,
        cwd=tmp_path,
        env=serve_environment(tmp_path, **settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    served = Served(f"http://127.0.0.1:{port}", port, process)
    try:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as http, asyncio.timeout(30):
            while True:
                try:
                    if (await http.get(served.base + "/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.returncode is not None:
                    _, output = await served.stop()
                    raise AssertionError(f"ragbus serve exited {process.returncode}: {output}")
                await asyncio.sleep(0.1)
        yield served
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
