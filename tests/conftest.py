"""Shared fixtures and the suite's rules.

- Fixtures: buses to run the behaviour suites against, settings, service URLs.
- Isolation: no ``RAGBUS_*`` setting of the developer's environment reaches a test;
  the session ends by checking that it left no queue or exchange on the broker.
- Skips: under ``CI=true`` a skip fails the run unless its reason is on
  :data:`ALLOWED_SKIPS`; every run ends by saying what it skipped and why.
- Service restarts: a test that restarts the broker is marked ``broker_restart`` and
  runs only with ``RAGBUS_TEST_BROKER_RESTART=1`` (the broker is shared).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path

import pytest

from ragbus.bus.base import Bus
from ragbus.bus.memory import MemoryBus
from ragbus.config import Settings
from tests.amqp import Namespace, delete_leftovers, leftovers
from tests.lm_server import FakeLMServer, start_lm_server
from tests.process.workers import (
    BROKER_RESTART_OPT_IN,
    BROKER_RESTART_SKIP,
    Workers,
    broker_restarts_allowed,
)
from tests.redis_keys import key_prefix
from tests.tcp_proxy import TcpProxy, proxies_to

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

BusFactory = Callable[..., Bus]

#: The skips a ``CI=true`` run accepts: a pattern searched in the skip's reason, and why
#: that skip is acceptable. Every other skip fails the run under CI.
ALLOWED_SKIPS: dict[str, str] = {
    # A broker restart drops every developer's connections on a shared machine, so it
    # runs only with the opt-in; .ci/run owns its broker and sets it, so in CI these
    # tests run and nothing is skipped. A developer's CI=true run skips them.
    re.escape(f"{BROKER_RESTART_OPT_IN}=1"): "service restarts are opt-in",
}

#: A test taking longer than this many seconds should carry ``@pytest.mark.slow``.
SLOW_S = 3.0


def unavailable(reason: str) -> None:
    """Skip the test for a missing service, but fail under CI, where nothing may be skipped."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(reason)


# -- the suite's rules ----------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``broker_restart`` tests unless the run opted in."""
    if broker_restarts_allowed():
        return
    skip = pytest.mark.skip(reason=BROKER_RESTART_SKIP)
    for item in items:
        if item.get_closest_marker("broker_restart") is not None:
            item.add_marker(skip)


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _allowed(reason: str) -> bool:
    return any(re.search(pattern, reason) for pattern in ALLOWED_SKIPS)


def _fail_a_forbidden_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Under CI, turn a skip that is not on :data:`ALLOWED_SKIPS` into a failure."""
    if not (IN_CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if _allowed(reason):
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped under CI=true, where a skip fails the run: {reason}\n"
        "(make the test run, or add its reason to ALLOWED_SKIPS in tests/conftest.py "
        "with why it may be skipped)"
    )


_WORKERS = pytest.StashKey[list[Workers]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Fail a forbidden skip (under CI); attach the log tail of every process the test
    started to the report of a failed test."""
    report = yield
    _fail_a_forbidden_skip(report)
    if report.failed:
        for workers in item.stash.get(_WORKERS, []):
            if workers.processes:
                report.sections.append((f"processes in {workers.directory}", workers.report()))
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _fail_a_forbidden_skip(report)
    return report


_durations: dict[str, float] = {}
_slow_marked: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up each test's time (setup, call and teardown) for the summary."""
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration
    if "slow" in report.keywords:
        _slow_marked.add(report.nodeid)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """Say what was skipped and why, and which tests are slow without the marker."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if not hasattr(report, "wasxfail")
    ]
    if skipped:
        terminalreporter.write_sep("=", f"{len(skipped)} skipped, and why")
        for report in skipped:
            allowed = " (allowed under CI)" if IN_CI else ""
            terminalreporter.write_line(f"{report.nodeid}: {_skip_reason(report)}{allowed}")
    unmarked = sorted(
        (seconds, nodeid)
        for nodeid, seconds in _durations.items()
        if seconds > SLOW_S and nodeid not in _slow_marked
    )
    if unmarked:
        terminalreporter.write_sep("=", f"over {SLOW_S:g}s without @pytest.mark.slow")
        for seconds, nodeid in reversed(unmarked):
            terminalreporter.write_line(f"{seconds:6.2f}s {nodeid}")


@pytest.fixture(autouse=True)
def _no_ragbus_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every ``RAGBUS_*`` setting of the developer's environment for the test
    (``RAGBUS_TEST_*``, the suite's own configuration, stays): a test's settings are
    the ones it states."""
    for name in list(os.environ):
        if name.startswith("RAGBUS_") and not name.startswith("RAGBUS_TEST_"):
            monkeypatch.delenv(name)


# -- buses ----------------------------------------------------------------------------


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
async def bus_namespace(
    bus_kind: str, request: pytest.FixtureRequest
) -> AsyncIterator[Namespace | None]:
    """The RabbitMQ namespace of the test's buses (None on the memory bus); its queues
    and exchange are deleted after the test."""
    if bus_kind == "memory":
        yield None
        return
    namespace = Namespace(request.getfixturevalue("amqp_url"))
    try:
        yield namespace
    finally:
        await namespace.cleanup()


@pytest.fixture
def make_bus(bus_kind: str, bus_namespace: Namespace | None, tmp_path: Path) -> BusFactory:
    """Builds buses of ``bus_kind`` that share one isolated namespace (for several
    workers of one test); options are passed to the bus's constructor. RabbitMQ queues
    and exchange of the namespace are deleted after the test."""
    if bus_namespace is None:
        return _memory_factory(tmp_path)
    return bus_namespace.make


@pytest.fixture
async def bus(make_bus: BusFactory) -> AsyncIterator[Bus]:
    """A connected bus of each kind, closed after the test."""
    instance = make_bus()
    await instance.connect()
    try:
        yield instance
    finally:
        await instance.close()


# -- processes and services -----------------------------------------------------------

WorkersFactory = Callable[..., Workers]


@pytest.fixture
async def make_workers(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[WorkersFactory]:
    """Makes :class:`~tests.process.workers.Workers` (the suite's one way to start
    processes): ``make_workers(settings=None, namespace=None)``. Every process still
    running after the test is stopped (SIGTERM, then SIGKILL), then the namespaces they
    served are cleaned up; a failed test's report shows each process's log."""
    made: list[Workers] = []
    request.node.stash[_WORKERS] = made

    def make(settings: Settings | None = None, namespace: Namespace | None = None) -> Workers:
        workers = Workers(tmp_path / f"processes-{len(made) + 1}", settings, namespace)
        made.append(workers)
        return workers

    try:
        yield make
    finally:
        for workers in made:
            await workers.close()
        # whatever the fixtures' order, a namespace is cleaned after its processes stop
        for namespace in {id(w.namespace): w.namespace for w in made if w.namespace}.values():
            await namespace.cleanup()


@pytest.fixture
async def cache_namespace(redis_url: str) -> AsyncIterator[str]:
    """A Redis key prefix of this test's own (``RAGBUS_CACHE_NAMESPACE``); its keys are
    deleted afterwards (Redis is shared: nothing else is touched)."""
    async with key_prefix(redis_url) as namespace:
        yield namespace


@pytest.fixture
def node_proxies(amqp_url: str) -> Iterator[list[TcpProxy]]:
    """Two "nodes" of a cluster for ``RAGBUS_AMQP_URL``: TCP proxies to the test broker;
    cutting one is losing that node (the real cluster is tests/cluster/)."""
    with proxies_to(amqp_url, 2) as proxies:
        yield proxies


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A RabbitMQ URL: ``RAGBUS_TEST_AMQP_URL``, else a testcontainers broker where Docker
    runs, else the test is skipped (failed under CI). At the end of the session, every
    queue and exchange of this session's namespaces must be gone (an error if not)."""
    url = os.environ.get("RAGBUS_TEST_AMQP_URL") or _rabbitmq_container()
    yield url
    left = asyncio.run(leftovers(url, Namespace.created))
    if left:
        asyncio.run(delete_leftovers(url, left))
        listing = "\n".join(
            f"  {name}  (made by {test or '?'})" for name, test in sorted(left.items())
        )
        raise AssertionError(
            f"the test session left {len(left)} queues or exchanges on the broker "
            f"(deleted now):\n{listing}"
        )


def _rabbitmq_container() -> str:
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


@pytest.fixture
def lm() -> Iterator[FakeLMServer]:
    """An OpenAI-compatible LM server over HTTP (tests/lm_server.py), answering ``ok``
    until told otherwise; stopped after the test."""
    server = start_lm_server()
    try:
        yield server
    finally:
        server.stop()
