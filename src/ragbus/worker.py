"""``ragbus worker``: serve some of a pipeline's stages until told to stop.

SIGTERM or Ctrl-C stops consuming, lets in-flight events finish within the grace
period, then exits 0; what is unfinished is redelivered to another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

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
    port: int | None = 9100,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``stage_names`` until SIGTERM/SIGINT (or ``stop`` is set), then drain.

    Parameters:
        settings: bus, corpus, LM, concurrency and grace period.
        stage_names: the stages to serve.
        host: interface of the ops endpoints (default 127.0.0.1).
        port: port of ``/healthz`` and ``/metrics`` (default 9100; None: no endpoints).
        stop: an event that ends the worker like a signal does (default: signals only).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bus = make_bus(settings)
    stages = select_stages(
        settings, stage_names, emit=emitter(bus) if settings.stream_tokens else None
    )
    metrics = Metrics()
    runtime = Runtime(bus, stages, settings=settings, metrics=metrics, sinks=SINKS)
    # Connecting may wait for the broker (RAGBUS_CONNECT_TIMEOUT_S): a signal ends the wait.
    connecting = asyncio.ensure_future(bus.connect())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not connecting.done():
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        await bus.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        logger.warning("worker %s stopped before it reached the broker", settings.worker_id)
        return
    await connecting

    consuming = False

    def health() -> dict[str, object]:
        ok = consuming and bus.healthy
        return {"ok": ok, "stages": list(stage_names), "worker_id": settings.worker_id}

    serving = (
        f"worker {settings.worker_id} serving {','.join(stage_names)} "
        f"on the {settings.bus.value} bus"
    )
    try:
        async with contextlib.AsyncExitStack() as stack:
            where = "no ops endpoints"
            if port is not None:
                # Bound before consuming: a port in use stops the worker before it takes
                # any event; the endpoints stay up while the worker drains.
                server = await stack.enter_async_context(
                    serve_ops(health, metrics, host=host, port=port)
                )
                shown = f"[{host}]" if ":" in host else host
                where = f"/healthz and /metrics on http://{shown}:{bound_port(server)}"
            await runtime.start()
            consuming = True
            # One line that says where /healthz is, also when ``port`` was 0.
            logger.warning("%s; %s", serving, where)
            await stop.wait()
            logger.warning("worker %s stopping: draining in-flight events", settings.worker_id)
            await runtime.stop(settings.shutdown_grace_s)
    finally:
        await bus.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
