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

from ragbus.bus.base import emitter
from ragbus.bus.factory import make_bus
from ragbus.config import Settings
from ragbus.errors import ConfigurationError
from ragbus.handlers import Emit
from ragbus.ops_http import bound_port, serve_ops
from ragbus.pipelines.rag import SINKS, STAGE_NAMES, rag_pipeline
from ragbus.runtime.metrics import Metrics
from ragbus.runtime.runner import Runtime
from ragbus.runtime.stage import Stage

logger = logging.getLogger(__name__)


def parse_stages(spec: str) -> list[str]:
    """Stage names from ``retrieve,generate`` or ``all``; unknown names are an error."""
    names = (
        list(STAGE_NAMES)
        if spec.strip() == "all"
        else [name.strip() for name in spec.split(",") if name.strip()]
    )
    unknown = [name for name in names if name not in STAGE_NAMES]
    if unknown or not names:
        named = ", ".join(unknown) or "(none)"
        raise ConfigurationError(
            f"unknown stage {named}; choose from {', '.join(STAGE_NAMES)} or all"
        )
    return names


def select_stages(
    settings: Settings, names: Sequence[str], *, emit: Emit | None = None
) -> list[Stage]:
    """The pipeline's stages called ``names``.

    Parameters:
        settings: the pipeline's configuration.
        names: the stages to keep.
        emit: publishes transient events (answer tokens); default none, no streaming.
    """
    return [stage for stage in rag_pipeline(settings, emit=emit) if stage.name in names]


async def run_worker(
    settings: Settings,
    stage_names: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    ops_endpoints: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``stage_names`` until SIGTERM/SIGINT (or ``stop`` is set), then drain.

    A signal while the worker is still connecting ends it at once (nothing was taken).

    Parameters:
        settings: bus, corpus, LM, concurrency and grace period.
        stage_names: the stages to serve.
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
    metrics = Metrics()
    consuming = False

    def health() -> dict[str, object]:
        ok = consuming and bus.healthy
        return {"ok": ok, "stages": list(stage_names), "worker_id": settings.worker_id}

    bus = make_bus(settings)
    try:
        async with contextlib.AsyncExitStack() as stack:
            where = "no ops endpoints"
            if ops_endpoints:
                # Bound first: a port in use stops the worker before it connects or
                # takes any event; the endpoints stay up while the worker drains.
                server = await stack.enter_async_context(
                    serve_ops(health, metrics, host=host, port=port)
                )
                shown = f"[{host}]" if ":" in host else host
                where = f"/healthz and /metrics on http://{shown}:{bound_port(server)}"
            stages = select_stages(
                settings,
                stage_names,
                emit=emitter(bus) if settings.stream_tokens else None,
            )
            runtime = Runtime(bus, stages, settings=settings, metrics=metrics, sinks=SINKS)
            if not await _unless_stopped(bus.connect(), stop):
                logger.warning("worker %s stopped before it reached the broker", settings.worker_id)
                return
            await runtime.start()
            consuming = True
            # One line that says where /healthz is, also when the port was chosen here.
            logger.warning(
                "worker %s serving %s on the %s bus; %s",
                settings.worker_id,
                ",".join(stage_names),
                settings.bus.value,
                where,
            )
            await stop.wait()
            logger.warning("worker %s stopping: draining in-flight events", settings.worker_id)
            await runtime.stop(settings.shutdown_grace_s)
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
