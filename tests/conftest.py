"""Shared fixtures: buses to run the behaviour suites against, and settings."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ragbus.bus.base import Bus
from ragbus.bus.memory import MemoryBus
from ragbus.config import Settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

BusFactory = Callable[..., Bus]


def unavailable(reason: str) -> None:
    """Skip the test for a missing service, but fail under CI, where nothing may be skipped."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings isolated from the environment's .env, with a DLQ file in ``tmp_path``."""
    return Settings(_env_file=None, dlq_path=tmp_path / "dlq.sqlite3")  # type: ignore[call-arg]


def _memory_factory(tmp_path: Path) -> BusFactory:
    def make(**options: object) -> Bus:
        return MemoryBus(dlq_path=tmp_path / "dlq.sqlite3", **options)  # type: ignore[arg-type]

    return make


BUS_KINDS = ["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)]


@pytest.fixture(params=BUS_KINDS)
def bus_kind(request: pytest.FixtureRequest) -> str:
    """Each behaviour test runs once per bus kind."""
    return str(request.param)


@pytest.fixture
async def make_bus(
    bus_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[BusFactory]:
    """Builds buses of ``bus_kind`` that share one isolated namespace (for several
    workers of one test); options are passed to the bus's constructor. RabbitMQ queues
    and exchange of the namespace are deleted after the test."""
    if bus_kind == "memory":
        yield _memory_factory(tmp_path)
        return
    from tests.amqp import Namespace

    namespace = Namespace(request.getfixturevalue("amqp_url"))
    try:
        yield namespace.make
    finally:
        await namespace.cleanup()


@pytest.fixture
async def bus(make_bus: BusFactory) -> AsyncIterator[Bus]:
    """A connected bus of each kind, closed after the test."""
    instance = make_bus()
    await instance.connect()
    try:
        yield instance
    finally:
        await instance.close()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """A RabbitMQ URL: ``RAGBUS_TEST_AMQP_URL``, else a testcontainers broker where Docker
    runs, else the test is skipped (failed under CI)."""
    url = os.environ.get("RAGBUS_TEST_AMQP_URL")
    if url:
        return url
    try:
        from testcontainers.community.rabbitmq import RabbitMqContainer  # type: ignore[import-not-found]

        container = RabbitMqContainer("rabbitmq:4-management")
        container.start()
    except Exception as exc:  # Docker missing or not running
        unavailable(f"no RabbitMQ: RAGBUS_TEST_AMQP_URL is unset and Docker is unavailable ({exc})")
        raise
    import atexit

    atexit.register(container.stop)
    host = container.get_container_host_ip()
    port = container.get_exposed_port(container.port)
    return f"amqp://{container.username}:{container.password}@{host}:{port}/"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis URL: ``RAGBUS_TEST_REDIS_URL``, else a testcontainers Redis where Docker
    runs, else the test is skipped (failed under CI)."""
    url = os.environ.get("RAGBUS_TEST_REDIS_URL")
    if url:
        return url
    try:
        from testcontainers.redis import RedisContainer

        container = RedisContainer("redis:7")
        container.start()
    except Exception as exc:
        unavailable(f"no Redis: RAGBUS_TEST_REDIS_URL is unset and Docker is unavailable ({exc})")
        raise
    import atexit

    atexit.register(container.stop)
    host = container.get_container_host_ip()
    port = container.get_exposed_port(container.port)
    return f"redis://{host}:{port}/0"
