"""Fixtures of the process-level tests: a RabbitMQ namespace and its worker processes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ragbus.pipelines.rag import pipeline as rag
from tests.amqp import Namespace
from tests.conftest import WorkersFactory
from tests.process.workers import Workers


@pytest.fixture
async def namespace(amqp_url: str) -> AsyncIterator[Namespace]:
    """A fresh exchange and queue prefix; every queue its buses and worker processes
    declared is deleted after the test (after its workers stopped)."""
    space = Namespace(amqp_url)
    space.stages.update(rag.stage_names)
    try:
        yield space
    finally:
        await space.cleanup()


@pytest.fixture
def workers(namespace: Namespace, make_workers: WorkersFactory) -> Workers:
    """Worker processes of the test's namespace, stopped after the test (see
    ``make_workers``)."""
    return make_workers(namespace=namespace)
