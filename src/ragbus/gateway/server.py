"""Serving the gateway with uvicorn: ``ragbus serve``, and in the background for tests."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from ragbus.client import Client
from ragbus.config import Settings
from ragbus.errors import ConfigurationError
from ragbus.gateway.app import create_app
from ragbus.gateway.exposure import check_exposure
from ragbus.http_server import in_background
from ragbus.pipeline import Pipeline

#: WebSocket frames up to this many times the body limit get an ``error`` frame;
#: larger ones close the connection (uvicorn's ``ws_max_size``).
WS_FRAME_FACTOR = 16


def server_config(
    app: ASGIApp,
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    lifespan: Literal["auto", "on", "off"] = "on",
) -> uvicorn.Config:
    """The uvicorn configuration of the gateway.

    Parameters:
        app: the ASGI app (see :func:`~ragbus.gateway.app.create_app`).
        settings: limits and the shutdown grace period.
        host: interface to bind (default ``settings.gateway_host``).
        port: TCP port, 0 for a free one (default ``settings.gateway_port``).
        lifespan: uvicorn's lifespan mode (default ``on``: the app opens its client).
    """
    return uvicorn.Config(
        app,
        host=host if host is not None else settings.gateway_host,
        port=port if port is not None else settings.gateway_port,
        lifespan=lifespan,
        # no logging config of uvicorn's own: its lines reach ragbus's handlers, so they
        # share the process's format (--log-format) and its redaction of secrets
        log_config=None,
        log_level="warning",
        ws="websockets-sansio",
        ws_max_size=settings.gateway_max_body_bytes * WS_FRAME_FACTOR,
        timeout_graceful_shutdown=max(int(settings.shutdown_grace_s), 1),
        server_header=False,
    )


class _Server(uvicorn.Server):
    """uvicorn's server, stopped gracefully by SIGTERM or SIGINT, after which the process
    exits normally (uvicorn itself re-raises the signal once it has shut down)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for signum in signals:
            loop.add_signal_handler(signum, self.handle_exit, signum, None)
        try:
            yield
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)


def serve(
    settings: Settings,
    *,
    pipeline: Pipeline | None = None,
    host: str | None = None,
    port: int | None = None,
) -> None:
    """Serve the gateway until SIGTERM or Ctrl-C (``ragbus serve``), then let open
    requests finish within ``settings.shutdown_grace_s`` and return.

    Raises :class:`~ragbus.errors.ConfigurationError` before binding a non-loopback
    address without ``RAGBUS_API_TOKEN`` (unless
    ``RAGBUS_GATEWAY_ALLOW_UNAUTHENTICATED``; see :mod:`ragbus.gateway.exposure`).

    Parameters:
        settings: the gateway's settings (bus, auth, limits, ...).
        pipeline: the pipeline (default: the one ``settings.app`` names).
        host: interface to bind (default ``settings.gateway_host``).
        port: TCP port (default ``settings.gateway_port``).
    """
    host = host if host is not None else settings.gateway_host
    port = port if port is not None else settings.gateway_port
    check_exposure(settings, host)
    listening = bind_gateway_socket(host, port, reuse_port=settings.gateway_reuse_port)
    with listening:
        asyncio.run(_serve(settings, listening, pipeline=pipeline))


def bind_gateway_socket(
    host: str, port: int, *, reuse_port: bool = False, listen: bool = True
) -> socket.socket:
    """The gateway's listening socket, bound before anything else starts: uvicorn, which
    exits the process with a log line when it cannot bind, never gets the chance.

    Raises :class:`~ragbus.errors.ConfigurationError` naming the address and what to do.

    Parameters:
        host: the interface.
        port: the TCP port (0: a free one).
        reuse_port: share the port with other sockets bound with ``SO_REUSEPORT``
            (default false).
        listen: listen on it (default true); a socket bound with ``reuse_port`` that
            does not listen only holds the port (and its number, when it was 0) for
            gateway processes that do, and takes no connection from them.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        if listen:
            return socket.create_server((host, port), family=family, reuse_port=reuse_port)
        held = socket.socket(family, socket.SOCK_STREAM)
        if reuse_port:
            held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind((host, port))
        return held
    except OSError as exc:
        shown = f"[{host}]" if ":" in host else host
        advice = (
            "choose another --port or stop what uses it"
            if exc.errno == errno.EADDRINUSE
            else "check --host"
        )
        raise ConfigurationError(
            f"cannot serve the gateway on {shown}:{port}: {exc.strerror or exc}; {advice}"
        ) from None


async def _serve(
    settings: Settings, listening: socket.socket, *, pipeline: Pipeline | None
) -> None:
    # The client connects before uvicorn starts: a broker that cannot be reached (after
    # RAGBUS_CONNECT_TIMEOUT_S of retries) ends `ragbus serve` with one clear line, not
    # with a lifespan traceback inside uvicorn.
    client = Client(settings, app=pipeline, follow_tokens=True)
    await client.open()
    try:
        config = server_config(create_app(settings, client), settings)
        await _Server(config).serve(sockets=[listening])
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def running(config: uvicorn.Config) -> AsyncIterator[uvicorn.Server]:
    """Run a uvicorn server in the background while the block runs (tests, benchmarks);
    use :func:`ragbus.http_server.bound_port` for the port when it was 0.

    Parameters:
        config: the server's configuration (see :func:`server_config`).
    """
    async with in_background(uvicorn.Server(config), name="ragbus:gateway") as server:
        yield server
