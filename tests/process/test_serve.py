"""``ragbus serve --bus rabbitmq`` as users run it: the gateway in its own process in
front of ``ragbus worker`` processes, answering over HTTP and stopped by SIGTERM."""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from ragbus.cli_common import ExitCode
from tests.gateway.conftest import QUESTION, parse_sse
from tests.polling import wait_until
from tests.process.workers import WorkerProcess, Workers, ragbus_command

pytestmark = pytest.mark.rabbitmq

#: The line ``ragbus serve`` prints first; the port then answers ``/healthz``.
GATEWAY_LINE = re.compile(r"ragbus gateway on http://(?P<host>[^:/]+):(?P<port>\d+)/")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def gateway_process(
    workers: Workers, port: int, *options: str
) -> AsyncIterator[tuple[WorkerProcess, httpx.AsyncClient]]:
    """``ragbus serve --bus rabbitmq --port PORT OPTIONS`` among ``workers``, and an HTTP
    client of it, once its ``/readyz`` says 200."""
    gateway = workers.spawn(
        name="gateway",
        argv=ragbus_command("serve", "--bus", "rabbitmq", "--port", str(port), *options),
        ready=GATEWAY_LINE,
    )
    await gateway.wait_ready(40)
    assert gateway.port == port
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False
    ) as http:

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await wait_until(ready, what="the gateway's /readyz to say 200", report=workers.report)
        yield gateway, http


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_ragbus_serve_answers_from_worker_processes(workers: Workers) -> None:
    await workers.start(name="worker", stream_tokens=True, cache_enabled=False)
    port = free_port()
    async with gateway_process(workers, port) as (gateway, http):
        asked = await http.post("/v1/ask", json={"question": QUESTION, "k": 2})
        streamed = await http.post("/v1/ask/stream", json={"question": QUESTION})
        metrics = await http.get("/metrics")

    assert asked.status_code == 200, asked.text
    body = asked.json()
    assert body["question"] == QUESTION and body["answer"].strip()
    assert len(body["sources"]) == 2
    assert any(source["doc_id"].startswith("failures.md") for source in body["sources"])

    assert streamed.status_code == 200, streamed.text
    events = parse_sse(streamed.text)
    tokens = [data["text"] for name, data in events if name == "token"]
    [answer] = [data["answer"] for name, data in events if name == "answer"]
    assert len(tokens) > 1 and "".join(tokens) == answer, "tokens streamed from the worker"
    assert events[-1][0] == "done"
    assert metrics.status_code == 200 and "ragbus_" in metrics.text

    assert await gateway.stop(timeout=30) == 0, gateway.describe()
    assert f"ragbus gateway on http://127.0.0.1:{port}/ (rabbitmq bus)" in gateway.log
    assert "Traceback" not in gateway.log


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_ragbus_serve_on_a_taken_port_stops_with_one_line(workers: Workers) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = await workers.run("serve", "--port", str(port), timeout=40)
    # the banner, then one line that says what is wrong, like a worker on a taken port
    [error] = [line for line in result.stderr.splitlines() if not GATEWAY_LINE.match(line)]
    assert error.startswith("error: ") and str(port) in error, result.stderr
    assert "choose another --port" in error
    assert result.code == ExitCode.CONFIGURATION, result.stderr
