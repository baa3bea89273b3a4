"""``ragbus serve --workers N``: N gateway processes sharing one port.

The command binds the port first (with ``SO_REUSEPORT``, without listening: it holds the
port, and its number when it was 0, and takes no connection), then supervises N ``ragbus
serve`` processes (:class:`~ragbus.process_pool.ProcessPool`) that each bind the same
port with ``SO_REUSEPORT`` and listen: the kernel spreads new connections over them.
Each has its own event loop, its own bus connection and its own core. A gateway process
that dies is restarted; SIGTERM or Ctrl-C drains every one (open requests finish within
``RAGBUS_SHUTDOWN_GRACE_S``).

The processes share nothing but the bus, so they need RabbitMQ (and workers): on the
memory bus each would run its own pipeline, with its own dead letters and no shared
work. A WebSocket chat session lives in the process that holds its connection.
``/metrics``, whichever process answers it, sums the gateway metrics of all of them
(:mod:`ragbus.pool_metrics`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from ragbus.config import BusKind, Settings
from ragbus.errors import ConfigurationError
from ragbus.gateway.exposure import check_exposure
from ragbus.gateway.server import bind_gateway_socket
from ragbus.pool_metrics import MULTIPROC_DIR_VARIABLE, PoolMetrics, metrics_directory
from ragbus.process_pool import ProcessPool, child_command, settings_environment

logger = logging.getLogger(__name__)


def check_gateway_workers(settings: Settings, count: int) -> None:
    """Raise :class:`~ragbus.errors.ConfigurationError` when ``count`` gateway processes
    cannot share the work of ``settings``'s bus (more than one on the memory bus)."""
    if count > 1 and settings.bus is BusKind.MEMORY:
        raise ConfigurationError(
            f"--workers {count} needs a shared bus: on the memory bus each gateway process "
            "would run a pipeline of its own; use --bus rabbitmq with `ragbus worker`"
        )


def gateway_environment(
    settings: Settings, number: int, port: int, metrics: Path
) -> dict[str, str]:
    """Gateway process ``number``'s environment: the parent's settings, one process that
    binds ``port`` with ``SO_REUSEPORT`` and writes its metrics to the folder
    ``metrics``."""
    env = settings_environment(settings, number)
    env[MULTIPROC_DIR_VARIABLE] = str(metrics)
    env.update(
        RAGBUS_GATEWAY_WORKERS="1",
        RAGBUS_GATEWAY_REUSE_PORT="true",
        RAGBUS_GATEWAY_HOST=settings.gateway_host,
        RAGBUS_GATEWAY_PORT=str(port),
        RAGBUS_GATEWAY_ALLOW_UNAUTHENTICATED="true"
        if settings.gateway_allow_unauthenticated
        else "false",
    )
    return env


async def run_gateway_pool(settings: Settings, count: int, *, verbose: bool = False) -> int:
    """Serve the gateway from ``count`` processes on ``settings.gateway_host`` and
    ``gateway_port`` until SIGTERM/SIGINT, then drain them; the exit code (0 when each
    process stopped cleanly).

    Raises :class:`~ragbus.errors.ConfigurationError` for the memory bus, an exposed
    address without a token, or a port that cannot be bound.

    Parameters:
        settings: the gateway's settings (every process gets them).
        count: how many gateway processes.
        verbose: the processes log what happens (default false).
    """
    check_gateway_workers(settings, count)
    check_exposure(settings, settings.gateway_host)
    held = bind_gateway_socket(
        settings.gateway_host, settings.gateway_port, reuse_port=True, listen=False
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    with held, metrics_directory() as directory:
        port = int(held.getsockname()[1])
        arguments = ["serve", *(["--verbose"] if verbose else [])]
        pool = ProcessPool(
            lambda number: child_command(arguments),
            count,
            lambda number: gateway_environment(settings, number, port, directory),
            name="gateway",
            drain_s=settings.shutdown_grace_s,
            on_exit=PoolMetrics(directory).process_exited,
        )
        try:
            await pool.start()
            logger.warning(
                "gateway: %d processes on http://%s:%d/ (pids %s)",
                count,
                settings.gateway_host,
                port,
                " ".join(map(str, pool.pids)),
            )
            await pool.wait(stop)
        finally:
            code = await pool.drain()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    return code
