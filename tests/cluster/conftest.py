"""The test session's RabbitMQ cluster, and what its tests measured.

The cluster starts when the first test needs it and stops after the last test of this
folder:

- with ``CI=true`` or ``RAGBUS_TEST_CLUSTER=1``, on this machine (``scripts/rabbitmq-cluster``:
  three nodes of the installed ``rabbitmq-server``, about 15 s to start);
- else where Docker runs, in containers (testcontainers);
- else the tests are skipped (failed under CI).

Every run ends with what the cluster tests measured (start time, recovery time, counts,
the nodes' memory), so CI logs keep the numbers.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from ragbus.pipelines.rag import pipeline as rag
from tests.amqp import SESSION, Namespace
from tests.cluster.nodes import (
    Cluster,
    ContainerCluster,
    LocalCluster,
    docker_runs,
    local_cluster_possible,
)
from tests.conftest import IN_CI, unavailable

#: The opt-in of a developer's run: start a local cluster without CI=true.
CLUSTER_OPT_IN = "RAGBUS_TEST_CLUSTER"

#: What the cluster tests measured, one line each, printed at the end of the run.
MEASURED: list[str] = []


@pytest.fixture(scope="package")
def rabbitmq_cluster() -> Iterator[Cluster]:
    """A three-node RabbitMQ cluster of this session's own, stopped after the last
    test of this folder (so its stopping is counted there, among the slow tests)."""
    why_not = local_cluster_possible()
    wanted = IN_CI or os.environ.get(CLUSTER_OPT_IN) == "1"
    cluster: Cluster
    if why_not is None and wanted:
        cluster = LocalCluster.start(f"ragbus-t{SESSION}n")
    elif docker_runs():
        cluster = ContainerCluster.start()
    elif why_not is None:
        unavailable(
            "starts a local three-node RabbitMQ cluster (scripts/rabbitmq-cluster, about "
            f"15 s): set {CLUSTER_OPT_IN}=1 to run it (CI=true runs it)"
        )
        raise AssertionError("unreachable")
    else:
        unavailable(f"no RabbitMQ cluster: {why_not}, and Docker is unavailable")
        raise AssertionError("unreachable")
    MEASURED.append(f"cluster of {len(cluster.nodes)} nodes started in {cluster.started_in_s:.1f}s")
    try:
        yield cluster
    finally:
        memory = ", ".join(f"{name} {mib:.0f} MiB" for name, mib in cluster.memory_mib().items())
        MEASURED.append(f"memory of the nodes at the end: {memory}")
        cluster.stop()


@pytest.fixture
async def cluster_namespace(rabbitmq_cluster: Cluster) -> AsyncIterator[Namespace]:
    """A namespace on the cluster (its queues deleted after the test, through the last
    node: tests stop the first)."""
    space = Namespace(rabbitmq_cluster.nodes[-1].url)
    space.stages.update(rag.stage_names)
    try:
        yield space
    finally:
        await space.cleanup()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASURED:
        terminalreporter.write_sep("=", "RabbitMQ cluster tests measured")
        for line in MEASURED:
            terminalreporter.write_line(line)
