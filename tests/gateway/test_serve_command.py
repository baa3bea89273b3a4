"""``ragbus serve``: the gateway as its own process on the memory bus, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.gateway.conftest import QUESTION, parse_sse


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_ragbus_serve_answers_streams_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    environment = {
        **os.environ,
        "RAGBUS_DLQ_PATH": str(tmp_path / "dlq.sqlite3"),
        "RAGBUS_BUS": "memory",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ragbus.cli",
        "serve",
        "--port",
        str(port),
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False
        ) as http:
            async with asyncio.timeout(30):
                while True:
                    try:
                        if (await http.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert process.returncode is None, await process.stdout.read()
                    await asyncio.sleep(0.1)
            response = await http.post("/v1/ask/stream", json={"question": QUESTION})
        events = parse_sse(response.text)
        assert len([name for name, _ in events if name == "token"]) > 1
        assert events[-1][0] == "done"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 20)
    output = (await process.stdout.read()).decode()
    assert code == 0, output
    assert f"ragbus gateway on http://127.0.0.1:{port}/ (memory bus)" in output
