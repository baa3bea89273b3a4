"""``ragbus serve --workers N`` as users run it: N gateway processes sharing one port in
front of ``ragbus worker``, answering and streaming over HTTP, stopped by SIGTERM; the
memory bus refuses it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import QUESTION, parse_sse
from tests.polling import wait_until
from tests.process.test_serve import GATEWAY_LINE, free_port
from tests.process.test_worker_pool import run_without_settings
from tests.process.workers import Metrics, Workers, ragbus_command

pytestmark = pytest.mark.rabbitmq


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_two_gateway_processes_share_a_port_and_answer(workers: Workers) -> None:
    await workers.start(name="worker", stream_tokens=True, cache_enabled=False)
    port = free_port()
    gateway = workers.spawn(
        name="gateway",
        argv=ragbus_command("serve", "--bus", "rabbitmq", "--workers", "2", "--port", str(port)),
        ready=GATEWAY_LINE,
    )
    await gateway.wait_ready(40)
    await wait_until(
        lambda: gateway.log.count(f"ragbus gateway on http://127.0.0.1:{port}/") == 2,
        what="both gateway processes to start",
        timeout=40,
        report=workers.report,
    )
    base = f"http://127.0.0.1:{port}"

    async def ask(number: int) -> httpx.Response:
        # a connection each: the kernel spreads connections, not requests
        async with httpx.AsyncClient(base_url=base, timeout=30, trust_env=False) as http:
            return await http.post("/v1/ask", json={"question": f"{QUESTION} ({number})"})

    async def ready() -> bool:
        async with httpx.AsyncClient(base_url=base, timeout=5, trust_env=False) as http:
            return all([(await http.get("/readyz")).status_code == 200 for _ in range(6)])

    await wait_until(ready, what="the gateway's /readyz to say 200", report=workers.report)
    answers = await asyncio.gather(*(ask(number) for number in range(12)))
    assert all(response.status_code == 200 for response in answers), [a.text for a in answers]
    assert all(response.json()["answer"].strip() for response in answers)
    async with httpx.AsyncClient(base_url=base, timeout=30, trust_env=False) as http:
        streamed = await http.post("/v1/ask/stream", json={"question": QUESTION})
        # whichever process answers the scrape, it counts the asks of both
        scraped = [Metrics.parse((await http.get("/metrics")).text) for _ in range(4)]
    for metrics in scraped:
        assert metrics.value("ragbus_gateway_requests_total", route="/v1/ask") == 12
    events = parse_sse(streamed.text)
    tokens = [data["text"] for name, data in events if name == "token"]
    [answer] = [data["answer"] for name, data in events if name == "answer"]
    assert tokens and "".join(tokens) == answer

    assert await gateway.stop(timeout=40) == 0, gateway.describe()
    assert "Traceback" not in gateway.log


@pytest.mark.slow  # starts Python and imports ragbus: seconds on a busy machine
def test_gateway_processes_on_the_memory_bus_are_a_clear_error(tmp_path: Path) -> None:
    done = run_without_settings(tmp_path, "serve", "--workers", "2", "--port", "0")
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip() == (
        "error: --workers 2 needs a shared bus: on the memory bus each gateway process "
        "would run a pipeline of its own; use --bus rabbitmq with `ragbus worker`"
    )
