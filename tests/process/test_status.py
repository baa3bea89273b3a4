"""``ragbus status`` as an operator runs it: a paused stage shows once its breaker opens.

On RabbitMQ the command hears the worker processes' heartbeats and asks the broker for
queue depths; on the memory bus it reads ``/v1/status`` of the ``ragbus serve`` that
runs the stages. Either way the LM is the stand-in server, failing with HTTP 500.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragbus.status.model import PAUSED, RUNNING, PipelineStatus
from tests.faults.support import QUESTION
from tests.gateway.serve_process import serving
from tests.lm_server import FakeLMServer
from tests.polling import wait_until
from tests.process.workers import Workers, ragbus_command

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

#: Questions sent while the LM fails: more than the breaker's minimum calls.
QUESTIONS = 6

#: Settings that make the LM breaker open after a few failed calls and stay open for
#: the whole test, with heartbeats twice a second.
BREAKER: dict[str, Any] = {
    "lm_model": "openai/test-model",
    "lm_api_key": "test",
    "retry_attempts": 1,
    "breaker_minimum_calls": 3,
    "breaker_window_size": 6,
    "breaker_open_s": 60.0,
    "heartbeat_interval_s": 0.5,
    "cache_enabled": False,
}


def check_paused(status: PipelineStatus) -> None:
    """generate paused behind its open LM breaker; retrieve still running."""
    generate = status.stage("generate")
    assert generate.state == PAUSED, generate
    assert generate.breaker == "open" and generate.dependency == "lm"
    assert generate.paused_workers == len(generate.workers) == 1
    assert generate.failed["transient"] >= 1, "the LM failures the breaker counted"
    assert generate.dead_letters["failed"] == 0, "an outage fills no DLQ"
    retrieve = status.stage("retrieve")
    assert retrieve.state == RUNNING and retrieve.processed >= 1
    assert retrieve.concurrency_limit > 0


@pytest.mark.rabbitmq
async def test_status_shows_the_stage_its_open_breaker_paused_on_rabbitmq(
    workers: Workers, lm: FakeLMServer
) -> None:
    lm.set(mode="error")
    await workers.start(name="worker", lm_api_base=lm.api_base, **BREAKER)
    questions = [json.dumps({"question": f"{QUESTION} ({n})"}) for n in range(QUESTIONS)]
    published = await workers.run("publish", *questions)
    assert published.code == 0, published.stderr

    async def status() -> PipelineStatus:
        result = await workers.run("status", "--json", "--listen", "1.5")
        assert result.code == 0, result.stderr
        return PipelineStatus.model_validate_json(result.stdout)

    seen: list[PipelineStatus] = []

    async def paused() -> bool:
        seen.append(await status())
        return seen[-1].stage("generate").state == PAUSED

    await wait_until(paused, what="generate to show paused", timeout=60, report=workers.report)
    current = seen[-1]
    check_paused(current)
    assert current.bus == "rabbitmq"
    assert [w.worker_id for w in current.workers] == ["worker"]
    generate = current.stage("generate")
    assert generate.consumers == 0, "a paused stage has cancelled its consumer"
    assert generate.queue_depth is not None and generate.queue_depth >= 1, "the rest waits"
    assert current.stage("retrieve").consumers == 1

    table = await workers.run("status", "--listen", "1.5")
    assert table.code == 0, table.stderr
    [row] = [line for line in table.stdout.splitlines() if line.split()[:1] == ["generate"]]
    assert "paused" in row and "lm open" in row, table.stdout
    assert "workers: worker (retrieve,generate" in table.stdout


async def status_command(*arguments: str, cwd: Path) -> tuple[int, str, str]:
    """``ragbus status ARGUMENTS`` run to its end: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        *ragbus_command("status", *arguments),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_status_shows_the_stage_its_open_breaker_paused_on_the_memory_bus(
    tmp_path: Path, lm: FakeLMServer
) -> None:
    lm.set(mode="error")
    settings = {f"RAGBUS_{name.upper()}": str(value) for name, value in BREAKER.items()}
    async with (
        serving(tmp_path, RAGBUS_LM_API_BASE=lm.api_base, **settings) as served,
        httpx.AsyncClient(base_url=served.base, timeout=30, trust_env=False) as http,
    ):
        asks = [
            asyncio.create_task(
                http.post("/v1/ask", json={"question": f"{QUESTION} ({n})", "timeout": 20})
            )
            for n in range(QUESTIONS)
        ]

        async def paused() -> bool:
            body = (await http.get("/v1/status")).json()
            return bool(body["stages"][1]["state"] == PAUSED)

        await wait_until(paused, what="generate to show paused", timeout=30)
        code, out, err = await status_command("--url", served.base, "--json", cwd=tmp_path)
        table_code, table, _ = await status_command("--url", served.base, cwd=tmp_path)
        for task in asks:
            task.cancel()
        await asyncio.gather(*asks, return_exceptions=True)
    assert code == 0 and table_code == 0, err
    status = PipelineStatus.model_validate_json(out)
    check_paused(status)
    assert status.bus == "memory"
    assert status.stage("generate").consumers == 0, "paused, as on RabbitMQ"
    [row] = [line for line in table.splitlines() if line.split()[:1] == ["generate"]]
    assert "paused" in row and "lm open" in row, table


async def test_status_watch_refreshes_until_ctrl_c(tmp_path: Path) -> None:
    async with serving(tmp_path, RAGBUS_HEARTBEAT_INTERVAL_S="0.3") as served:
        process = await asyncio.create_subprocess_exec(
            *ragbus_command(
                "status", "--url", served.base, "--watch", "--json", "--interval", "0.3"
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path,
        )
        assert process.stdout is not None
        lines = [await asyncio.wait_for(process.stdout.readline(), 30) for _ in range(3)]
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    statuses = [PipelineStatus.model_validate_json(line) for line in lines]
    assert [s.collected_at for s in statuses] == sorted({s.collected_at for s in statuses})
    assert all(s.stage("generate").state == RUNNING for s in statuses)
    assert err.decode() == "", "Ctrl-C ends the view quietly"
