"""``ragbus worker --processes N``: N worker processes on this host and one ``/metrics``.

The command becomes a supervisor: it starts N ``ragbus worker --processes 1`` children
(each its own event loop, its own broker connection, its own core), restarts one that
dies (:class:`~ragbus.process_pool.ProcessPool`), and on SIGTERM or Ctrl-C forwards the
signal and waits for every child to drain. It serves ``/healthz`` and ``/metrics`` for
all of them: the children write their metrics to files in a private temporary folder
(prometheus-client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``), the supervisor
sums them (counters and histograms over every child that ever ran, gauges over the
live ones) and deletes the folder when it stops.

The memory bus lives inside one process, so a pool needs RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from ragbus.config import BusKind, Settings
from ragbus.errors import ConfigurationError
from ragbus.ops_http import ops_endpoints_in
from ragbus.pipeline import Pipeline
from ragbus.pool_metrics import MULTIPROC_DIR_VARIABLE, PoolMetrics, metrics_directory
from ragbus.process_pool import ProcessPool, child_command, settings_environment

logger = logging.getLogger(__name__)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's cpuset,
    where the platform tells it), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def pool_size(requested: int | None, settings: Settings) -> int:
    """How many worker processes to run: ``requested`` (``--processes``), else
    ``RAGBUS_WORKER_PROCESSES``, else one per core. More than one on the memory bus is a
    :class:`~ragbus.errors.ConfigurationError`: its queues live inside one process."""
    count = requested or settings.worker_processes or usable_cores()
    if count > 1 and settings.bus is BusKind.MEMORY and requested is not None:
        raise ConfigurationError(
            f"--processes {count} needs a shared bus: the memory bus lives inside one "
            "process and cannot share work between processes; use --bus rabbitmq"
        )
    return count


def child_environment(settings: Settings, number: int, metrics: Path) -> dict[str, str]:
    """Worker ``number``'s environment (see
    :func:`~ragbus.process_pool.settings_environment`), one process each, writing its
    metrics to the folder ``metrics``."""
    env = settings_environment(settings, number)
    env.update(RAGBUS_WORKER_PROCESSES="1")
    env[MULTIPROC_DIR_VARIABLE] = str(metrics)
    return env


async def run_worker_pool(
    settings: Settings,
    pipeline: Pipeline,
    *,
    stages: str,
    count: int,
    host: str = "127.0.0.1",
    port: int | None = None,
    ops_endpoints: bool = True,
    verbose: bool = False,
    stop: asyncio.Event | None = None,
) -> int:
    """Supervise ``count`` workers serving ``stages`` until SIGTERM/SIGINT (or ``stop``),
    then drain them; the exit code (0 when every worker drained cleanly).

    Parameters:
        settings: this command's settings; the workers get the same (see
            :func:`child_environment`) and ``shutdown_grace_s`` is the drain timeout.
        pipeline: the pipeline (named in the health report).
        stages: the ``--stages`` of every worker (``all`` or a comma-separated list).
        count: how many worker processes.
        host: interface of the ops endpoints (default 127.0.0.1).
        port: port of ``/healthz`` and ``/metrics`` (as for one worker; default None:
            9100, or a free port when it is taken).
        ops_endpoints: serve ``/healthz`` and ``/metrics`` (default true).
        verbose: the workers log what happens (default false).
        stop: an event that ends the pool like a signal does (default: signals only).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    arguments = ["worker", "--processes", "1", "--port", "-1", "--stages", stages]
    arguments += ["--verbose"] if verbose else []
    try:
        with metrics_directory() as directory:
            metrics = PoolMetrics(directory)
            pool = ProcessPool(
                lambda number: child_command(arguments),
                count,
                lambda number: child_environment(settings, number, directory),
                drain_s=settings.shutdown_grace_s,
                on_exit=metrics.process_exited,
            )

            def health() -> dict[str, object]:
                consuming = int(metrics.value("ragbus_worker_consuming"))
                return {
                    "ok": consuming >= count and len(pool.pids) == count,
                    "app": pipeline.name,
                    "stages": stages,
                    "worker_id": settings.worker_id,
                    "processes": count,
                    "consuming": consuming,
                    "pids": pool.pids,
                    "restarts": pool.restarts,
                }

            async with contextlib.AsyncExitStack() as stack:
                where = await ops_endpoints_in(
                    stack, health, metrics, host=host, port=port, enabled=ops_endpoints
                )
                await pool.start()
                try:
                    logger.warning(
                        "worker pool %s: %d processes serving %s:%s on the %s bus (pids %s); %s",
                        settings.worker_id,
                        count,
                        pipeline.name,
                        stages,
                        settings.bus.value,
                        " ".join(map(str, pool.pids)),
                        where,
                    )
                    await pool.wait(stop)
                    logger.warning(
                        "worker pool %s stopping: %d processes draining", settings.worker_id, count
                    )
                finally:
                    # also when this task is cancelled: no child is left running
                    code = await pool.drain()
                return code
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
