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

from ragbus.bus.factory import make_bus
from ragbus.config import Settings
from ragbus.errors import ConfigurationError
from ragbus.host import Host
from ragbus.ops_http import bound_port, serve_ops
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
    port: int | None = 9100,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``pipeline``'s stages until SIGTERM/SIGINT (or ``stop`` is set), then drain.

    Parameters:
        settings: bus, corpus, LM, concurrency and grace period.
        pipeline: the pipeline whose stages to serve.
        stage_names: the stages to serve (default None: all of them).
        host: interface of the ops endpoints (default 127.0.0.1).
        port: port of ``/healthz`` and ``/metrics`` (default 9100; None: no endpoints).
        stop: an event that ends the worker like a signal does (default: signals only).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bus = make_bus(settings)
    hosted = Host(pipeline, bus, settings, stages=stage_names, stream=settings.stream_tokens)
    metrics = hosted.metrics
    await bus.connect()

    consuming = False

    def health() -> dict[str, object]:
        ok = consuming and bus.healthy
        return {
            "ok": ok,
            "app": pipeline.name,
            "stages": list(hosted.stage_names),
            "worker_id": settings.worker_id,
        }

    serving = (
        f"worker {settings.worker_id} serving {pipeline.name}:{','.join(hosted.stage_names)} "
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
            await hosted.start()
            consuming = True
            # One line that says where /healthz is, also when ``port`` was 0.
            logger.warning("%s; %s", serving, where)
            await stop.wait()
            logger.warning("worker %s stopping: draining in-flight events", settings.worker_id)
            await hosted.stop(settings.shutdown_grace_s)
    finally:
        await bus.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
