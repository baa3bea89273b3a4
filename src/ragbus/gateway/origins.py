"""The ``Origin`` check: a page on another site may not act through a user's browser.

CORS only decides whether a page may *read* a response; a cross-site form or
``fetch(..., {mode: "no-cors"})`` POST still reaches the server, and a WebSocket is not
covered by CORS at all. So the gateway refuses, before any work is done, every
state-changing request and every WebSocket handshake whose ``Origin`` is neither the
gateway's own host nor an origin of the CORS allow-list.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ragbus.gateway.errors import error_response, refuse

#: Methods that change nothing: served whatever the origin (CORS guards their reading).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _normalized(origin: str) -> str:
    return origin.strip().lower().rstrip("/")


def same_host(origin: str, host_header: str) -> bool:
    """Whether ``origin`` (``scheme://host[:port]``) names the host and port of the
    request's ``Host`` header (the scheme is not compared: behind a TLS proxy the
    gateway sees plain HTTP while the page is on ``https``).

    Parameters:
        origin: the ``Origin`` header.
        host_header: the ``Host`` header.
    """
    try:
        netloc = urlsplit(origin.strip()).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == host_header.strip().lower()


class OriginGuardMiddleware:
    """Refuses state-changing requests (not ``GET``/``HEAD``/``OPTIONS``) and WebSocket
    handshakes from another origin with 403 and a JSON body (``origin_not_allowed``).

    Allowed: no ``Origin`` header (a client that is not a browser: curl, a service), the
    gateway's own host (the chat page), and the origins of ``allowed_origins`` (``*``
    allows any). ``Origin: null`` (a sandboxed frame, a local file) is refused unless
    ``null`` is listed.

    Parameters:
        app: the app to wrap.
        allowed_origins: origins allowed besides the gateway's own
            (``RAGBUS_CORS_ORIGINS``; default there: none).
    """

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed_origins = frozenset(_normalized(origin) for origin in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None or self.allowed(origin, headers.get("host", "")):
            await self.app(scope, receive, send)
            return
        response = error_response(
            403,
            "origin_not_allowed",
            f"requests from the origin {origin.strip()[:200]!r} are not allowed: "
            "add it to RAGBUS_CORS_ORIGINS",
        )
        await refuse(scope, receive, send, response)

    def allowed(self, origin: str, host_header: str) -> bool:
        """Whether ``origin`` may act on a gateway reached as ``host_header``."""
        normalized = _normalized(origin)
        if "*" in self.allowed_origins or normalized in self.allowed_origins:
            return True
        return normalized != "null" and same_host(origin, host_header)
