"""``ragbus serve``: the gateway as its own process on the memory bus, stopped by SIGTERM;
it refuses to serve the network without a token unless told to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import QUESTION, parse_sse
from tests.gateway.serve_process import free_port, serve_environment, serving


async def test_ragbus_serve_answers_streams_and_stops_on_sigterm(tmp_path: Path) -> None:
    async with serving(tmp_path) as served:
        async with httpx.AsyncClient(base_url=served.base, timeout=10, trust_env=False) as http:
            response = await http.post("/v1/ask/stream", json={"question": QUESTION})
        events = parse_sse(response.text)
        assert len([name for name, _ in events if name == "token"]) > 1
        assert events[-1][0] == "done"
        code, output = await served.stop(20)
    assert code == 0, output
    assert f"ragbus gateway on http://127.0.0.1:{served.port}/ (memory bus)" in output


@pytest.mark.slow
def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.10", "gateway.example"):
        result = subprocess.run(
            [sys.executable, "-m", "ragbus.cli", "serve", "--host", host],
            env=serve_environment(tmp_path, RAGBUS_GATEWAY_PORT=str(free_port())),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 3, result.stderr  # ExitCode.CONFIGURATION
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"error: refusing to serve {host} without a token")
        assert "RAGBUS_API_TOKEN" in line and "--allow-unauthenticated" in line


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arguments", "settings"),
    [
        ((), {"RAGBUS_API_TOKEN": "s3cret"}),
        (("--allow-unauthenticated",), {}),
        ((), {"RAGBUS_GATEWAY_ALLOW_UNAUTHENTICATED": "true"}),
    ],
    ids=["token", "flag", "setting"],
)
async def test_serve_binds_a_public_address_with_a_token_or_when_told(
    tmp_path: Path, arguments: tuple[str, ...], settings: dict[str, str]
) -> None:
    async with serving(tmp_path, *arguments, host="0.0.0.0", **settings) as served:
        code, output = await served.stop()
    assert code == 0, output
