"""A worker's operations endpoints: ``/healthz`` and ``/metrics``."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from typing import Final, Protocol

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ragbus.errors import ConfigurationError
from ragbus.http_server import bound_port, in_background

logger = logging.getLogger(__name__)


class RendersMetrics(Protocol):
    """What ``/metrics`` serves: one process's :class:`~ragbus.runtime.metrics.Metrics`,
    or a worker pool's sum of its processes' metrics."""

    def render(self) -> bytes:
        """The metrics in Prometheus's text format."""
        ...


#: The port a worker's ops endpoints take when none is given, if it is free.
DEFAULT_OPS_PORT: Final = 9100


def ops_app(health: Callable[[], dict[str, object]], metrics: RendersMetrics) -> Starlette:
    """A Starlette app serving ``/healthz`` (200 when ``health()["ok"]``, else 503) and
    ``/metrics`` (Prometheus text format)."""

    async def healthz(request: Request) -> Response:
        report = health()
        return JSONResponse(report, status_code=200 if report.get("ok") else 503)

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", metrics_route)])


def bind_ops_socket(host: str, port: int | None) -> socket.socket:
    """A listening socket for the ops endpoints.

    Parameters:
        host: interface to bind.
        port: the port to bind, exactly (0: a free one); None: :data:`DEFAULT_OPS_PORT`,
            or a free port when that one is taken (several workers on one host).

    Raises :class:`~ragbus.errors.ConfigurationError` when ``host:port`` cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    wanted = DEFAULT_OPS_PORT if port is None else port
    try:
        return socket.create_server((host, wanted), family=family)
    except OSError as exc:
        if port is None and exc.errno == errno.EADDRINUSE:
            logger.warning(
                "port %d is taken (another worker on this host?): serving /healthz and "
                "/metrics on a free port instead; set --port to choose one",
                wanted,
            )
            return bind_ops_socket(host, 0)
        shown = f"[{host}]" if ":" in host else host
        what_to_do = (
            "choose another --port (0 picks a free one) or stop what uses it"
            if exc.errno == errno.EADDRINUSE
            else "check --host and --port"
        )
        # create_server's own strerror repeats the address: say it once
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigurationError(
            f"cannot serve /healthz and /metrics on {shown}:{wanted}: {reason}; {what_to_do}"
        ) from exc


@contextlib.asynccontextmanager
async def serve_ops(
    health: Callable[[], dict[str, object]],
    metrics: RendersMetrics,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
) -> AsyncIterator[uvicorn.Server]:
    """Serve the ops endpoints in the background while the block runs.

    Parameters:
        health: returns the health report; ``ok`` decides the status code.
        metrics: the metrics to export.
        host: interface to bind (default 127.0.0.1).
        port: TCP port, exactly (0 picks a free one); None (default):
            :data:`DEFAULT_OPS_PORT`, or a free port when it is taken.

    Raises :class:`~ragbus.errors.ConfigurationError` when ``host:port`` cannot be bound.
    """
    # Bind here rather than in uvicorn, which exits the process when it cannot bind.
    listening = bind_ops_socket(host, port)
    config = uvicorn.Config(
        ops_app(health, metrics), host=host, port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    async with in_background(server, name="ragbus:ops-http", sockets=[listening]):
        yield server


async def ops_endpoints_in(
    stack: contextlib.AsyncExitStack,
    health: Callable[[], dict[str, object]],
    metrics: RendersMetrics,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    enabled: bool = True,
) -> str:
    """Serve the ops endpoints (see :func:`serve_ops`) until ``stack`` closes, when
    ``enabled`` (default true); where they are, for the process's ready line:
    ``/healthz and /metrics on http://HOST:PORT`` or ``no ops endpoints``.

    Raises :class:`~ragbus.errors.ConfigurationError` when ``host:port`` cannot be bound.
    """
    if not enabled:
        return "no ops endpoints"
    server = await stack.enter_async_context(serve_ops(health, metrics, host=host, port=port))
    shown = f"[{host}]" if ":" in host else host
    return f"/healthz and /metrics on http://{shown}:{bound_port(server)}"


__all__ = [
    "DEFAULT_OPS_PORT",
    "bind_ops_socket",
    "bound_port",
    "ops_app",
    "ops_endpoints_in",
    "serve_ops",
]
