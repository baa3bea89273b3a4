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
import pytest

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


def _serve_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "ragbus.cli", "serve", *arguments]


def _environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RAGBUS_")}
    environment.update(RAGBUS_DLQ_PATH=str(tmp_path / "dlq.sqlite3"), RAGBUS_BUS="memory")
    environment.update(settings)
    return environment


@pytest.mark.slow
def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.10", "gateway.example"):
        result = subprocess.run(
            _serve_command("--host", host, "--port", str(_free_port())),
            env=_environment(tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 3, result.stderr  # ExitCode.CONFIGURATION
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"error: refusing to serve {host} without a token")
        assert "RAGBUS_API_TOKEN" in line and "--allow-unauthenticated" in line


async def _serves(tmp_path: Path, arguments: list[str], **settings: str) -> None:
    """Start ``ragbus serve ARGUMENTS`` on 0.0.0.0, wait until it is ready on 127.0.0.1,
    then stop it with SIGTERM and expect exit 0."""
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        *_serve_command("--host", "0.0.0.0", "--port", str(port), *arguments),
        cwd=tmp_path,
        env=_environment(tmp_path, **settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as http, asyncio.timeout(30):
            while True:
                try:
                    response = await http.get(f"http://127.0.0.1:{port}/readyz")
                    if response.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.returncode is None, await process.stdout.read()
                await asyncio.sleep(0.1)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 20)
    assert code == 0, (await process.stdout.read()).decode()


@pytest.mark.slow
async def test_serve_binds_a_public_address_with_a_token_or_when_told(tmp_path: Path) -> None:
    await _serves(tmp_path, [], RAGBUS_API_TOKEN="s3cret")
    await _serves(tmp_path, ["--allow-unauthenticated"])
    await _serves(tmp_path, [], RAGBUS_GATEWAY_ALLOW_UNAUTHENTICATED="true")
