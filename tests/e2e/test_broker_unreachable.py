"""A broker that cannot be reached: every command says so in one line (URL masked) and
exits ``UNAVAILABLE``; a worker, the gateway and a ``Client`` started before their
broker wait for it (one log line per attempt), work once it is there, and give up with
one line after ``RAGBUS_CONNECT_TIMEOUT_S``.

"Reachable" is a TCP proxy the test starts on the port the processes were told to use;
the shared broker itself is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from ragbus.bus.errors import BrokerUnavailableError
from ragbus.cli_common import ExitCode
from ragbus.client import Client
from ragbus.config import BusKind, Settings
from ragbus.pipelines.rag import STAGE_NAMES
from tests.amqp import Namespace
from tests.tcp_proxy import TcpProxy, free_port, start_proxy

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

#: A password that must never be printed.
SECRET = "s3cret-password"


def unreachable_url(port: int) -> str:
    return f"amqp://guest:{SECRET}@127.0.0.1:{port}/"


def ragbus_env(**settings: object) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAGBUS_")}
    # one worker process: these tests read a worker's own lines (a pool adds its own)
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="true", PYTHONUNBUFFERED="1", RAGBUS_WORKER_PROCESSES="1"
    )
    env.update({f"RAGBUS_{name.upper()}": str(value) for name, value in settings.items()})
    return env


@dataclass
class Process:
    """A ``ragbus`` process whose stderr is read line by line as it comes."""

    process: asyncio.subprocess.Process
    started: float
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, *arguments: str, env: dict[str, str], cwd: Path) -> Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ragbus.cli",
            *arguments,
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        started = cls(process, time.monotonic())
        started.reader = asyncio.create_task(started._read())
        return started

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode().rstrip("\n"))

    async def wait_for_line(self, text: str, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while not any(text in line for line in self.lines):
                if self.process.returncode is not None:
                    raise AssertionError(f"exited {self.process.returncode}: {self.lines}")
                await asyncio.sleep(0.05)

    async def wait(self, timeout: float = 60.0) -> int:
        async with asyncio.timeout(timeout):
            code = await self.process.wait()
            if self.reader is not None:
                await self.reader
        return code

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await self.wait(30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


def attempt_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "cannot reach the RabbitMQ broker" in line]


def assert_unavailable_line(text: str, port: int) -> None:
    """``text`` is one ``error:`` line naming the masked URL and what to do."""
    assert text.startswith(
        f"error: cannot reach the RabbitMQ broker at amqp://guest:***@127.0.0.1:{port}/ ("
    ), text
    assert "point RAGBUS_AMQP_URL at a running broker" in text
    assert "\n" not in text.strip()


ONE_SHOT = [
    ["ask", "--bus", "rabbitmq", "Which LM answers by default?"],
    ["publish", "--bus", "rabbitmq", '{"question": "q"}'],
    ["dlq", "list", "--bus", "rabbitmq"],
    ["dlq", "show", "--bus", "rabbitmq", "1234"],
    ["dlq", "replay", "--bus", "rabbitmq"],
    ["dlq", "purge", "--bus", "rabbitmq", "--yes"],
    ["dlq", "export", "--bus", "rabbitmq", "out.jsonl"],
    ["dlq", "import", "--bus", "rabbitmq", "in.jsonl"],
]


@pytest.mark.parametrize("arguments", ONE_SHOT, ids=lambda a: " ".join(a[:2]))
async def test_a_command_says_in_one_line_that_the_broker_is_unreachable(
    arguments: list[str], tmp_path: Path
) -> None:
    port = free_port()
    (tmp_path / "in.jsonl").write_text("")
    env = ragbus_env(amqp_url=unreachable_url(port), connect_timeout_s=30)
    process = await Process.start(*arguments, env=env, cwd=tmp_path)
    code = await process.wait(60)
    assert code == ExitCode.UNAVAILABLE, process.lines
    # one-shot commands try once, whatever RAGBUS_CONNECT_TIMEOUT_S says
    assert len(process.lines) == 1, process.lines
    assert_unavailable_line(process.lines[0], port)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    "arguments",
    [["worker", "--port", "0"], ["serve", "--bus", "rabbitmq", "--port", "0"]],
    ids=["worker", "serve"],
)
async def test_a_service_gives_up_with_one_line_after_the_connect_timeout(
    arguments: list[str], tmp_path: Path
) -> None:
    port = free_port()
    limit = 3.0
    env = ragbus_env(bus="rabbitmq", amqp_url=unreachable_url(port), connect_timeout_s=limit)
    process = await Process.start(*arguments, env=env, cwd=tmp_path)
    code = await process.wait(60)
    elapsed = time.monotonic() - process.started
    assert code == ExitCode.UNAVAILABLE, process.lines
    # the limit, plus starting Python and importing ragbus on a busy machine
    assert limit <= elapsed < limit + 20
    lines = [line for line in process.lines if not line.startswith("ragbus gateway on ")]
    *attempts, last = lines
    assert_unavailable_line(last, port)
    assert attempts and attempts == attempt_lines(attempts), process.lines  # nothing else
    assert len(attempts) >= 2  # it kept trying, one line per attempt
    assert all(f"127.0.0.1:{port}" in line and "attempt" in line for line in attempts)
    assert all(SECRET not in line for line in process.lines)
    assert "Traceback" not in "\n".join(process.lines)


async def test_a_client_gives_up_after_the_connect_timeout(
    caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    caplog.set_level(logging.WARNING, logger="ragbus")
    port = free_port()
    limit = 1.5
    client = Client(
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            bus=BusKind.RABBITMQ,
            amqp_url=unreachable_url(port),  # type: ignore[arg-type]
            connect_timeout_s=limit,
            dlq_path=settings.dlq_path,
        )
    )
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as raised:
        await client.open()
    elapsed = time.monotonic() - started
    assert limit <= elapsed < limit + 10
    assert str(raised.value).startswith(
        f"cannot reach the RabbitMQ broker at amqp://guest:***@127.0.0.1:{port}/"
    )
    assert len(attempt_lines(caplog.messages)) >= 2
    assert SECRET not in caplog.text and SECRET not in str(raised.value)
    await client.close()


@pytest.fixture
async def namespace(amqp_url: str) -> AsyncIterator[Namespace]:
    space = Namespace(amqp_url)
    space.stages.update(STAGE_NAMES)
    try:
        yield space
    finally:
        if not space.buses:
            space.make()
        await space.cleanup()


async def test_a_worker_a_gateway_and_a_client_wait_for_their_broker(
    namespace: Namespace, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ragbus")
    broker = urlsplit(namespace.url)
    assert broker.hostname is not None and broker.port is not None
    proxy_port = free_port()  # nobody listens here until the proxy starts
    behind_proxy = namespace.url.replace(
        f"{broker.hostname}:{broker.port}", f"127.0.0.1:{proxy_port}"
    )
    proxy: TcpProxy | None = None
    common = {
        "bus": "rabbitmq",
        "amqp_url": behind_proxy,
        "exchange": namespace.exchange,
        "queue_prefix": namespace.prefix,
        "connect_timeout_s": 120,
        "dlq_path": tmp_path / "dlq.sqlite3",
    }
    gateway_port = free_port()
    worker = await Process.start("worker", "--port", "0", env=ragbus_env(**common), cwd=tmp_path)
    gateway = await Process.start(
        "serve", "--port", str(gateway_port), env=ragbus_env(**common), cwd=tmp_path
    )
    client = Client(Settings(_env_file=None, **common))  # type: ignore[call-arg, arg-type]
    opening = asyncio.create_task(client.open())
    try:
        # all three are trying, one line per attempt, and none has given up
        for process in (worker, gateway):
            await process.wait_for_line("cannot reach the RabbitMQ broker", timeout=60)
        async with asyncio.timeout(30):
            while not attempt_lines(caplog.messages):
                await asyncio.sleep(0.05)
        assert not opening.done()
        assert worker.process.returncode is None and gateway.process.returncode is None
        for process in (worker, gateway):  # waiting: a line per attempt, masked, no traceback
            waited = "\n".join(process.lines)
            assert ":guest@" not in waited and "Traceback" not in waited, waited

        proxy = start_proxy(namespace.url, port=proxy_port)  # the broker is reachable now
        await worker.wait_for_line("serving rag:retrieve,generate", timeout=60)
        async with asyncio.timeout(60):
            await opening
        answer = await client.ask("How does ragbus handle a failed event?", timeout=60)
        assert answer.text
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway_port}") as http:
            async with asyncio.timeout(60):
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get("/readyz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
            response = await http.post(
                "/v1/ask", json={"question": "Which LM answers by default?"}, timeout=60
            )
        assert response.status_code == 200, response.text
        assert response.json()["answer"]
        assert proxy.connections >= 3
        assert worker.process.returncode is None and gateway.process.returncode is None
    finally:
        if not opening.done():
            opening.cancel()
        await client.close()
        await worker.stop()
        await gateway.stop()
        if proxy is not None:
            proxy.stop()


async def test_a_worker_waiting_for_its_broker_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = ragbus_env(bus="rabbitmq", amqp_url=unreachable_url(port), connect_timeout_s=300)
    worker = await Process.start("worker", "--port", "0", env=env, cwd=tmp_path)
    try:
        await worker.wait_for_line("cannot reach the RabbitMQ broker", timeout=60)
        worker.process.terminate()
        assert await worker.wait(20) == ExitCode.OK, worker.lines
        assert "stopped before it reached the broker" in worker.lines[-1]
    finally:
        await worker.stop()
