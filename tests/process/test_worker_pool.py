"""``ragbus worker --processes N`` as users run it: one supervisor, N worker processes on
RabbitMQ, one ``/metrics``. A killed worker is restarted and loses no question; SIGTERM
drains every worker; the memory bus refuses a pool.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragbus.bus.base import DeadLetterFilter
from ragbus.pipelines.rag import STAGE_NAMES
from tests.amqp import Namespace
from tests.polling import wait_until
from tests.process.test_worker_processes import assert_one_answer_each, observer, queries
from tests.process.workers import WorkerProcess, Workers, ragbus_command

pytestmark = pytest.mark.rabbitmq

#: ``ragbus worker`` as a pool of two processes, ops endpoints on a free port.
POOL = ragbus_command("worker", "--processes", "2", "--port", "0")


async def pool_pids(pool: WorkerProcess) -> list[int]:
    """The pids of the pool's workers, from its ``/healthz``."""
    _, report = await pool.healthz()
    pids = report.get("pids", [])
    assert isinstance(pids, list)
    return [int(pid) for pid in pids]


async def pool_metric(pool: WorkerProcess, name: str, **labels: str) -> float:
    """A metric of the pool's ``/metrics`` (summed over its workers)."""
    return (await pool.metrics()).value(name, **labels)


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_pool_restarts_a_killed_worker_and_answers_every_question_once(
    namespace: Namespace, workers: Workers
) -> None:
    pool = await workers.start(argv=POOL, lm_latency_ms=100, concurrency=8, cache_enabled=False)
    _, report = await pool.healthz()
    assert report["processes"] == 2 and report["consuming"] == 2, report
    bus, log = await observer(namespace)
    try:
        first = queries(20, "before ")
        await asyncio.gather(*(bus.publish(query) for query in first))
        await log.wait_for((q.id for q in first), timeout=60, report=workers.report)
        # one /metrics for both workers: each counted its own, the pool shows the sum
        metrics = await pool.metrics()
        assert metrics.value("ragbus_processed_total", stage="generate") == len(first)
        assert metrics.value("ragbus_worker_consuming") == 2

        victim, survivor = await pool_pids(pool)
        second = queries(60, "kill ")
        await asyncio.gather(*(bus.publish(query) for query in second))

        async def busy() -> bool:
            return await pool_metric(pool, "ragbus_in_flight", stage="generate") > 0

        await wait_until(busy, what="work in flight", timeout=30, report=workers.report)
        os.kill(victim, 9)

        async def restarted() -> bool:
            status, report = await pool.healthz()
            pids = report.get("pids", [])
            return status == 200 and victim not in pids and len(pids) == 2

        await wait_until(
            restarted, what="the killed worker to be restarted", timeout=40, report=workers.report
        )
        _, report = await pool.healthz()
        assert report["restarts"] == 1 and survivor in report["pids"], report
        await log.wait_for((q.id for q in second), timeout=90, report=workers.report)
        assert_one_answer_each(log, first + second)
        assert "was killed by SIGKILL" in pool.log
        assert await pool.stop(30) == 0
    finally:
        await bus.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_sigterm_drains_every_worker_of_a_pool(
    namespace: Namespace, workers: Workers
) -> None:
    pool = await workers.start(
        argv=POOL, lm_latency_ms=1500, concurrency=4, cache_enabled=False, shutdown_grace_s=20
    )
    bus, log = await observer(namespace)
    try:
        sent = queries(6, "drain ")
        await asyncio.gather(*(bus.publish(query) for query in sent))

        in_flight: list[float] = []

        async def both_busy() -> bool:
            in_flight.append(await pool_metric(pool, "ragbus_in_flight", stage="generate"))
            return in_flight[-1] >= 2

        await wait_until(both_busy, what="answers being written", timeout=40, report=workers.report)
        pool.terminate()
        assert await pool.wait_exit(40) == 0, workers.report()
        # what was in flight at SIGTERM was finished and published before the exit
        assert len(log.answered(q.id for q in sent)) >= in_flight[-1]
        assert pool.log.count("stopping: draining in-flight events") == 2
        # nothing was lost: a new worker answers the rest, each question once
        await workers.start(lm_latency_ms=0)
        await log.wait_for((q.id for q in sent), timeout=60, report=workers.report)
        assert_one_answer_each(log, sent)
        assert await bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter()) == []
    finally:
        await bus.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_the_workers_of_a_killed_supervisor_drain_and_stop(workers: Workers) -> None:
    pool = await workers.start(argv=POOL, cache_enabled=False, shutdown_grace_s=5)
    children = await pool_pids(pool)
    pool.kill()
    assert await pool.wait_exit(10) == -9

    def gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() for pid in children)

    await wait_until(gone, what="the orphaned workers to stop", timeout=30, report=pool.describe)
    # the kernel sent them SIGTERM (PR_SET_PDEATHSIG): they drained, not crashed
    assert pool.log.count("stopping: draining in-flight events") == 2


def run_without_settings(directory: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """``ragbus ARGUMENTS`` as a subprocess in ``directory``, with no ``RAGBUS_`` setting."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RAGBUS_")}
    return subprocess.run(
        [sys.executable, "-m", "ragbus.cli", *arguments],
        env=environment,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow  # starts Python and imports ragbus: seconds on a busy machine
def test_a_pool_on_the_memory_bus_is_a_clear_error(tmp_path: Path) -> None:
    done = run_without_settings(tmp_path, "worker", "--processes", "2", "--bus", "memory")
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip() == (
        "error: --processes 2 needs a shared bus: the memory bus lives inside one process "
        "and cannot share work between processes; use --bus rabbitmq"
    )
