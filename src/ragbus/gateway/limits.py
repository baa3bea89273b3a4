"""Request size limits: a body larger than the limit is refused with 413."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragbus.gateway.errors import error_response


class _BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Refuses HTTP request bodies over ``max_bytes`` with 413 and a JSON error.

    A declared ``Content-Length`` over the limit is refused before the body is read; a
    body sent without one (chunked) is counted as it is read, and refused once it
    passes the limit (when the response has not started yet).

    Parameters:
        app: the app to wrap.
        max_bytes: the largest accepted body, in bytes.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "too_large", f"the request body is larger than {self.max_bytes} bytes"
        )
        await response(scope, receive, send)
