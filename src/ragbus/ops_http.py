"""A worker's operations endpoints: ``/healthz`` and ``/metrics``."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ragbus.errors import ConfigurationError
from ragbus.http_server import bound_port, in_background
from ragbus.runtime.metrics import Metrics

logger = logging.getLogger(__name__)


def ops_app(health: Callable[[], dict[str, object]], metrics: Metrics) -> Starlette:
    """A Starlette app serving ``/healthz`` (200 when ``health()["ok"]``, else 503) and
    ``/metrics`` (Prometheus text format)."""

    async def healthz(request: Request) -> Response:
        report = health()
        return JSONResponse(report, status_code=200 if report.get("ok") else 503)

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", metrics_route)])


@contextlib.asynccontextmanager
async def serve_ops(
    health: Callable[[], dict[str, object]],
    metrics: Metrics,
    *,
    host: str = "127.0.0.1",
    port: int = 9100,
) -> AsyncIterator[uvicorn.Server]:
    """Serve the ops endpoints in the background while the block runs.

    Parameters:
        health: returns the health report; ``ok`` decides the status code.
        metrics: the metrics to export.
        host: interface to bind (default 127.0.0.1).
        port: TCP port (default 9100; 0 picks a free one).

    Raises :class:`~ragbus.errors.ConfigurationError` when ``host:port`` cannot be bound.
    """
    config = uvicorn.Config(
        ops_app(health, metrics), host=host, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    # Bind here rather than in uvicorn, which exits the process when it cannot bind.
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listening = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve /healthz and /metrics on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    async with in_background(server, name="ragbus:ops-http", sockets=[listening]):
        yield server


__all__ = ["bound_port", "ops_app", "serve_ops"]
