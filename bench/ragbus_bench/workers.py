"""ragbus across processes: N ``ragbus worker`` processes against 1, same load.

Each pool is N ``ragbus worker --bus rabbitmq --stages all`` processes in a namespace of
its own (``RAGBUS_EXCHANGE`` / ``RAGBUS_QUEUE_PREFIX``, ``RAGBUS_CONCURRENCY`` per
worker); this process only drives the load, through a ``Client(settings,
run_pipeline=False, follow_progress=False)`` per pool (it waits for answers only). All
pools are started first and then run in interleaved rounds (see
:mod:`ragbus_bench.rounds`); CPU is counted over the workers and this process,
and the broker separately.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aio_pika
from aiormq.exceptions import AMQPError

from ragbus.client import Client
from ragbus.config import BusKind, Settings
from ragbus.errors import RagbusError
from ragbus.pipelines.rag import pipeline as rag
from ragbus_bench.cpu import CpuMeter
from ragbus_bench.load import ASK_TIMEOUT_S, AskOne, closed_loop, question
from ragbus_bench.namespace import Namespace, delete_namespace
from ragbus_bench.rounds import Contender, run_rounds
from ragbus_bench.stats import BenchConfig, BenchResult

#: Seconds to wait for the workers to consume every stage.
READY_TIMEOUT_S = 60.0

#: Seconds a worker gets to drain after SIGTERM before it is killed.
STOP_TIMEOUT_S = 30.0

#: Questions asked before the timed run, so every worker has warmed up.
WARM_UP_QUESTIONS = 50


class WorkersFailed(RagbusError):
    """A worker process exited or never consumed its stages."""


def pool_name(count: int, supervised: bool = False) -> str:
    """The name of a pool of ``count`` workers in results."""
    how = " under `--processes`" if supervised else ""
    return f"ragbus: {count} worker process{'es' if count != 1 else ''}{how}"


def worker_command(processes: int = 1) -> list[str]:
    """``ragbus worker --bus rabbitmq --stages all --port -1 --processes N`` (the console
    script beside this Python, else ``python -m ragbus.cli``)."""
    script = Path(sys.executable).with_name("ragbus")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "ragbus.cli"]
    options = ["--stages", "all", "--port", "-1", "--processes", str(processes)]
    return [*base, "worker", "--bus", "rabbitmq", *options]


def child_pids(pid: int) -> list[int]:
    """The pids of process ``pid``'s children (Linux ``/proc``; none where missing)."""
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:
        return []


def worker_environment(settings: Settings) -> dict[str, str]:
    """This process's environment with the bus, namespace, concurrency and LM latency of
    ``settings``."""
    return {
        **os.environ,
        "RAGBUS_BUS": BusKind.RABBITMQ.value,
        "RAGBUS_AMQP_URL": settings.amqp_url.get_secret_value(),
        "RAGBUS_EXCHANGE": settings.exchange,
        "RAGBUS_QUEUE_PREFIX": settings.queue_prefix,
        "RAGBUS_CONCURRENCY": str(settings.concurrency),
        "RAGBUS_LM_LATENCY_MS": str(settings.lm_latency_ms),
    }


async def consumer_counts(url: str, queues: Sequence[str]) -> list[int]:
    """Consumers of each of ``queues`` (0 for a queue that does not exist yet)."""
    counts = []
    connection = await aio_pika.connect(url)
    try:
        for name in queues:
            channel = await connection.channel(publisher_confirms=False)
            try:
                queue = await channel.declare_queue(name, passive=True)
                counts.append(queue.declaration_result.consumer_count or 0)
            except AMQPError:
                counts.append(0)  # not declared yet: the passive declare closed the channel
            finally:
                with contextlib.suppress(AMQPError, RuntimeError):
                    await channel.close()
    finally:
        await connection.close()
    return counts


async def _wait_ready(
    settings: Settings, processes: Sequence[asyncio.subprocess.Process], logs: Path, count: int
) -> None:
    """Return once every stage queue has ``count`` consumers."""
    queues = [f"{settings.queue_prefix}.{stage}" for stage in rag.stage_names]
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_S
    while True:
        exited = [p for p in processes if p.returncode is not None]
        if exited:
            raise WorkersFailed(f"a worker exited with {exited[0].returncode}; logs in {logs}")
        counts = await consumer_counts(settings.amqp_url.get_secret_value(), queues)
        if all(consumers >= count for consumers in counts):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise WorkersFailed(f"workers not consuming after {READY_TIMEOUT_S:g}s: {counts}")
        await asyncio.sleep(0.2)


async def _stop(processes: Sequence[asyncio.subprocess.Process]) -> None:
    """SIGTERM each worker (it drains and exits 0); kill those still running later."""
    for process in processes:
        if process.returncode is None:
            process.terminate()
    for process in processes:
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()


@asynccontextmanager
async def worker_pool(
    settings: Settings, count: int, supervised: bool = False
) -> AsyncIterator[list[int]]:
    """``count`` worker processes serving every stage in ``settings``'s namespace,
    consuming while the context is open; yields their pids. Their output goes to a
    temporary folder, kept (and named in the error) only if they fail.

    Parameters:
        settings: the namespace, broker URL, concurrency and LM latency of the workers.
        count: how many worker processes.
        supervised: one ``ragbus worker --processes COUNT`` rather than ``count``
            separate commands (default False); its pids then include the supervisor's.
    """
    logs = Path(tempfile.mkdtemp(prefix="ragbus-bench-workers-"))
    processes: list[asyncio.subprocess.Process] = []
    failed = True
    try:
        for number in range(1 if supervised else count):
            with (logs / f"worker-{number}.log").open("wb") as log:
                processes.append(
                    await asyncio.create_subprocess_exec(
                        *worker_command(count if supervised else 1),
                        env=worker_environment(settings),
                        stdout=log,
                        stderr=asyncio.subprocess.STDOUT,
                    )
                )
        await _wait_ready(settings, processes, logs, count)
        pids = [process.pid for process in processes]
        yield pids + [child for pid in pids for child in child_pids(pid)]
        failed = False
    finally:
        await _stop(processes)
        if not failed:
            shutil.rmtree(logs, ignore_errors=True)


@asynccontextmanager
async def pool_client(
    settings: Settings, count: int, supervised: bool = False
) -> AsyncIterator[tuple[AskOne, list[int]]]:
    """A pool of ``count`` workers in a fresh namespace and a client driving it; yields
    the warmed-up ``ask_one`` and the workers' pids. The namespace is deleted on exit.

    Parameters:
        settings: broker URL, per-worker concurrency and LM latency.
        count: how many worker processes.
        supervised: under one ``ragbus worker --processes COUNT`` (default False).
    """
    namespace = Namespace.fresh(f"workers{count}{'p' if supervised else ''}")
    scoped = namespace.apply(settings)
    try:
        async with (
            worker_pool(scoped, count, supervised) as pids,
            Client(scoped, run_pipeline=False, follow_progress=False) as client,
        ):

            async def ask_one(number: int) -> object:
                return await client.ask(question(number), timeout=ASK_TIMEOUT_S)

            warm_up = min(WARM_UP_QUESTIONS, settings.concurrency)
            await closed_loop(ask_one, range(-WARM_UP_QUESTIONS, 0), warm_up)
            yield ask_one, pids
    finally:
        await delete_namespace(
            settings.amqp_url.get_secret_value(), namespace.exchange, namespace.ragbus_queues()
        )


async def run_worker_comparison(
    settings: Settings,
    config: BenchConfig,
    *,
    counts: Sequence[int] = (1, 2),
    rounds: int = 4,
    supervised: Sequence[int] = (),
) -> list[BenchResult]:
    """Benchmark a pool of each size in ``counts`` on the same load, interleaved.

    Parameters:
        settings: broker URL, corpus, LM latency; ``settings.concurrency`` is each
            worker's per-stage concurrency.
        config: questions and how many in flight (the load, shared by all workers).
        counts: pool sizes (default ``(1, 2)``).
        rounds: interleaved rounds (default 4).
        supervised: sizes of pools run as one ``ragbus worker --processes N`` as well
            (default none).
    """
    async with AsyncExitStack() as stack:
        contenders = []
        pools = [(count, False) for count in counts] + [(count, True) for count in supervised]
        for count, under_one in pools:
            ask_one, pids = await stack.enter_async_context(pool_client(settings, count, under_one))
            meter = CpuMeter(pids, broker=True)
            contenders.append(Contender(pool_name(count, under_one), ask_one, meter))
        return await run_rounds(contenders, config, rounds=rounds)
