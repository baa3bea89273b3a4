"""Optional bearer-token authentication for the gateway's routes."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ragbus.gateway.errors import error_response

#: Paths served without a token: health checks and the chat page (static HTML that
#: holds no data; the API calls it makes need the token).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/"})

#: The query parameter a browser's WebSocket may carry the token in (browsers cannot
#: set an ``Authorization`` header on a WebSocket).
TOKEN_QUERY_PARAMETER = "access_token"


class BearerAuthMiddleware:
    """Requires ``Authorization: Bearer <token>`` on every path but ``public_paths``.

    A request without the right token gets 401 with a JSON :class:`ErrorBody` and
    ``WWW-Authenticate: Bearer``; a WebSocket handshake is refused (HTTP 403). A
    WebSocket may also send the token as the ``access_token`` query parameter. CORS
    preflights (``OPTIONS``) are answered before this middleware. Tokens are compared
    in constant time.

    Parameters:
        app: the app to wrap.
        token: the expected token.
        public_paths: paths that need no token (default :data:`PUBLIC_PATHS`).
    """

    def __init__(
        self, app: ASGIApp, token: str, public_paths: Iterable[str] = PUBLIC_PATHS
    ) -> None:
        if not token:
            raise ValueError("the API token must not be empty")
        self.app = app
        self.token = token.encode()
        self.public_paths = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        if self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
            return
        response = error_response(
            401,
            "unauthorized",
            "this route needs the header `Authorization: Bearer <token>` (RAGBUS_API_TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        offered = credentials.strip() if scheme.lower() == "bearer" else ""
        if not offered and scope["type"] == "websocket":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            offered = (query.get(TOKEN_QUERY_PARAMETER) or [""])[0]
        return bool(offered) and hmac.compare_digest(offered.encode(), self.token)
