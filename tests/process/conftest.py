"""Fixtures of the process-level tests: a RabbitMQ namespace, its worker processes, and
the workers' logs in the report of a failed test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from ragbus.pipelines.rag import pipeline as rag
from tests.amqp import Namespace
from tests.process.workers import Workers

WORKERS = pytest.StashKey[Workers]()


@pytest.fixture
async def namespace(amqp_url: str) -> AsyncIterator[Namespace]:
    """A fresh exchange and queue prefix; every queue of the pipeline's stages and sinks
    in it is deleted after the test (after its workers stopped)."""
    space = Namespace(amqp_url)
    space.stages.update(rag.stage_names)
    try:
        yield space
    finally:
        if not space.buses:  # cleanup deletes the queues of its buses' topologies
            space.make()
        await space.cleanup()


@pytest.fixture
async def workers(
    namespace: Namespace, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Workers]:
    """Worker processes of the test's namespace; every one still running is stopped
    (SIGTERM, then SIGKILL) after the test."""
    directory = tmp_path / "workers"
    directory.mkdir()
    started = Workers(namespace, directory)
    request.node.stash[WORKERS] = started
    try:
        yield started
    finally:
        await started.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach every worker's log tail to the report of a failed test."""
    report = yield
    started = item.stash.get(WORKERS, None)
    if started is not None and report.failed and started.processes:
        report.sections.append(("worker logs", started.report()))
    return report
