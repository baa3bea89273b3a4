"""``ragbus worker``: serve some of a pipeline's stages until told to stop.

SIGTERM or Ctrl-C stops consuming, lets in-flight events finish within the grace
period, then exits 0; what is unfinished is redelivered to another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine, Sequence
from typing import Any

from ragbus.bus.factory import make_bus
from ragbus.config import Settings
from ragbus.errors import ConfigurationError
from ragbus.host import Host
from ragbus.ops_http import ops_endpoints_in
from ragbus.pipeline import Pipeline

logger = logging.getLogger(__name__)


def parse_stages(pipeline: Pipeline, spec: str) -> list[str] | None:
    """Stage names from ``retrieve,generate``, or None for ``all``; an unknown name is a
    :class:`~ragbus.errors.ConfigurationError` naming the pipeline's stages."""
    if spec.strip() == "all":
        return None
    names = [name.strip() for name in spec.split(",") if name.strip()]
    try:
        pipeline.select(names)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return names


async def run_worker(
    settings: Settings,
    pipeline: Pipeline,
    stage_names: Sequence[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    ops_endpoints: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``pipeline``'s stages until SIGTERM/SIGINT (or ``stop`` is set), then drain.

    A signal while the worker is still connecting ends it at once (nothing was taken).

    Parameters:
        settings: bus, corpus, LM, concurrency and grace period.
        pipeline: the pipeline whose stages to serve.
        stage_names: the stages to serve (default None: all of them).
        host: interface of the ops endpoints (default 127.0.0.1).
        port: port of ``/healthz`` and ``/metrics``, exactly (0: a free one; taken: a
            :class:`~ragbus.errors.ConfigurationError`); None (default): 9100, or a free
            port when 9100 is taken (logged).
        ops_endpoints: serve ``/healthz`` and ``/metrics`` (default true).
        stop: an event that ends the worker like a signal does (default: signals only).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bus = make_bus(settings)
    hosted = Host(pipeline, bus, settings, stages=stage_names, stream=settings.stream_tokens)
    metrics = hosted.metrics
    consuming = False

    def health() -> dict[str, object]:
        ok = consuming and bus.healthy
        return {
            "ok": ok,
            "app": pipeline.name,
            "stages": list(hosted.stage_names),
            "worker_id": settings.worker_id,
        }

    try:
        async with contextlib.AsyncExitStack() as stack:
            # Bound first: a port in use stops the worker before it connects or takes
            # any event; the endpoints stay up while the worker drains.
            where = await ops_endpoints_in(
                stack, health, metrics, host=host, port=port, enabled=ops_endpoints
            )
            if not await _unless_stopped(bus.connect(), stop):
                logger.warning("worker %s stopped before it reached the broker", settings.worker_id)
                return
            await hosted.start()
            consuming = True
            metrics.consuming.set(1)
            # One line that says where /healthz is, also when the port was chosen here.
            logger.warning(
                "worker %s serving %s:%s on the %s bus; %s",
                settings.worker_id,
                pipeline.name,
                ",".join(hosted.stage_names),
                settings.bus.value,
                where,
            )
            await stop.wait()
            logger.warning("worker %s stopping: draining in-flight events", settings.worker_id)
            metrics.consuming.set(0)
            await hosted.stop(settings.shutdown_grace_s)
    finally:
        await bus.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``work`` unless ``stop`` is set first (then cancel it): whether it ran."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        task.result()  # raises what the work raised
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False
