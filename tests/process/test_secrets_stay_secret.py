"""Connection URLs and keys are secrets: whatever a ``ragbus`` process prints — its own
messages, what aio-pika, aiormq, redis-py and aiocache log on failed connections and
reconnects, tracebacks, ``/metrics`` — never holds a password, against unreachable,
refusing and reachable services alike, and with URLs that do not even parse."""

from __future__ import annotations

import asyncio
import socket
import uuid
from dataclasses import dataclass

import pytest

from ragbus.cli_common import ExitCode
from tests.amqp import Namespace
from tests.process.workers import Workers, launched, ragbus_command

pytestmark = [pytest.mark.rabbitmq, pytest.mark.redis, pytest.mark.timeout(120)]


@dataclass(frozen=True)
class Secrets:
    """Distinct secret values of one test, and where they go."""

    amqp: str
    redis: str
    lm_key: str
    token: str

    @classmethod
    def new(cls) -> Secrets:
        def one(kind: str) -> str:
            return f"{kind}-{uuid.uuid4().hex[:12]}"

        return cls(one("AmqpPw"), one("RedisPw"), one("sk-LmKey"), one("GatewayToken"))

    def found_in(self, text: str) -> list[str]:
        return [value for value in vars(self).values() if value in text]

    def settings(self, amqp_url: str, cache_url: str) -> dict[str, str]:
        return {
            "amqp_url": amqp_url,
            "cache_url": cache_url,
            "lm_api_key": self.lm_key,
            "api_token": self.token,
        }


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (it was free a moment ago)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


async def run_command(
    workers: Workers,
    *arguments: str,
    settings: dict[str, str],
    raw: dict[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, str]:
    """Run ``ragbus ARGUMENTS`` with ``settings`` (on top of ``workers``' base settings)
    and ``raw`` settings put in the environment unchecked (values ragbus must refuse);
    its exit code and everything printed."""
    env = workers.environment(**settings)
    env.update({f"RAGBUS_{name.upper()}": value for name, value in (raw or {}).items()})
    process = await asyncio.create_subprocess_exec(
        *launched(ragbus_command(*arguments)),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        raise AssertionError(f"ragbus {arguments} still running:\n{output.decode()}") from None
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def assert_no_secret(secrets: Secrets, text: str) -> None:
    leaked = secrets.found_in(text)
    assert not leaked, f"{leaked} printed:\n{text}"


@pytest.mark.parametrize("service", ["unreachable", "refusing"])
async def test_a_worker_that_cannot_connect_prints_no_password(
    workers: Workers, service: str
) -> None:
    secrets = Secrets.new()
    host = f"127.0.0.1:{closed_port()}" if service == "unreachable" else "127.0.0.1:5672"
    # a broker that refuses: a user that does not exist there
    amqp_url = f"amqp://ragbus-no-such-user:{secrets.amqp}@{host}/"
    cache_url = f"redis://:{secrets.redis}@127.0.0.1:{closed_port()}/0"
    worker = workers.spawn(
        argv=ragbus_command("worker", "--port", "0", "--verbose"),
        connect_timeout_s=3,  # it retries an unreachable broker until then
        **secrets.settings(amqp_url, cache_url),
    )

    code = await worker.wait_exit(60)

    assert code != 0
    assert_no_secret(secrets, worker.log)


async def test_a_serving_worker_and_its_metrics_print_no_password(
    namespace: Namespace, workers: Workers, redis_url: str
) -> None:
    """Reachable broker and Redis, URLs with passwords, and a Redis URL whose server is
    gone: the worker serves, degrades to no cache, and prints no secret."""
    secrets = Secrets.new()
    amqp_url = namespace.url  # the test broker's own credentials
    gone = f"redis://:{secrets.redis}@127.0.0.1:{closed_port()}/0"
    settings = secrets.settings(amqp_url, gone)
    worker = await workers.start(
        argv=ragbus_command("worker", "--port", "0", "--verbose"), **settings
    )

    code, asked = await run_command(
        workers,
        "ask", "--bus", "rabbitmq", "--verbose", "How does ragbus handle a failed event?",
        settings=settings,
    )  # fmt: skip

    assert code == 0, asked
    metrics = await worker.metrics_text()
    assert 'result="error"' in metrics  # the cache outage was met, and counted
    worker.terminate()
    assert await worker.wait_exit(30) == 0
    for text in (worker.log, asked, metrics):
        assert_no_secret(secrets, text)
    assert "cache get failed, going on without the cache" in worker.log


async def test_a_client_that_cannot_reach_the_broker_prints_no_password(
    workers: Workers,
) -> None:
    secrets = Secrets.new()
    settings = secrets.settings(
        f"amqp://app:{secrets.amqp}@127.0.0.1:{closed_port()}/",
        f"redis://:{secrets.redis}@127.0.0.1:{closed_port()}/0",
    )
    for arguments in (
        ("ask", "--bus", "rabbitmq", "--timeout", "5", "q?"),
        ("publish", "--bus", "rabbitmq", '{"question": "q?"}'),
    ):
        code, output = await run_command(workers, *arguments, settings=settings)
        assert code != 0, output
        assert_no_secret(secrets, output)


@pytest.mark.parametrize(
    ("setting", "template"),
    [
        ("amqp_url", "amqp:/u:{}@@@x:y:z"),  # aio-pika would log it as given, forever
        ("amqp_url", "amqp://u:{}@127.0.0.1:99999/"),
        ("cache_url", "redis:/:{}@@x:y"),  # redis-py would repeat it in its error
        ("cache_url", "redis://:{}@127.0.0.1:port/0"),
    ],
)
async def test_a_malformed_url_is_refused_without_being_shown(
    namespace: Namespace, workers: Workers, setting: str, template: str
) -> None:
    secrets = Secrets.new()
    settings = secrets.settings(namespace.url, f"redis://:{secrets.redis}@127.0.0.1:6379/0")
    del settings[setting]

    code, output = await run_command(
        workers,
        "worker",
        "--port",
        "0",
        settings=settings,
        raw={setting: template.format(secrets.amqp)},
        timeout=30,
    )

    assert code == ExitCode.CONFIGURATION, output
    assert output.strip().splitlines() == [output.strip()]
    assert f"invalid setting: {setting}" in output
    assert_no_secret(secrets, output)
