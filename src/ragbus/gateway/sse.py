"""Server-Sent Events: the encoding, and a response that stops when its client leaves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.types import Receive, Scope, Send

#: Seconds between keep-alive comments while a stream has nothing to send.
PING_S = 15.0

#: The keep-alive comment.
PING = b": ping\n\n"


def encode_event(name: str, data: Mapping[str, Any]) -> bytes:
    """One SSE event: ``event: <name>`` and its JSON ``data`` line.

    Parameters:
        name: the event name (``stage``, ``token``, ...).
        data: the event's data, sent as compact JSON on one line.
    """
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {name}\ndata: {body}\n\n".encode()


class EventStreamResponse:
    """An ASGI response streaming ``events`` as ``text/event-stream``.

    It watches the connection while it streams: when the client disconnects, the
    stream is cancelled at once (also while it waits for its next event) and closed,
    so nothing keeps running for a client that left. While no event is ready it sends a
    keep-alive comment every ``ping_s`` seconds.

    Parameters:
        events: the encoded events (see :func:`encode_event`); closed when done.
        headers: extra response headers (default none).
        ping_s: seconds between keep-alive comments (default :data:`PING_S`).
        on_close: called once the stream has ended, however it ended (default none),
            e.g. to release the stream's slot.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncIterator[bytes],
        *,
        headers: Mapping[str, str] | None = None,
        ping_s: float = PING_S,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.events = events
        self.headers = dict(headers or {})
        self.ping_s = ping_s
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {
            "content-type": f"{self.media_type}; charset=utf-8",
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
            **{name.lower(): value for name, value in self.headers.items()},
        }
        streaming = asyncio.create_task(self._stream(send, headers), name="ragbus:sse")
        watching = asyncio.create_task(_until_disconnect(receive), name="ragbus:sse-watch")
        try:
            await asyncio.wait({streaming, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, watching):
                task.cancel()
            results = await asyncio.gather(streaming, watching, return_exceptions=True)
            with contextlib.suppress(Exception):
                await _aclose(self.events)
            if self.on_close is not None:
                self.on_close()
        error = results[0]
        if isinstance(error, Exception) and not isinstance(error, OSError):
            raise error

    async def _stream(self, send: Send, headers: dict[str, str]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
            }
        )
        sending = asyncio.Lock()
        last_sent = time.monotonic()

        def mark_sent() -> None:
            nonlocal last_sent
            last_sent = time.monotonic()

        async def ping() -> None:
            while True:
                await asyncio.sleep(max(last_sent + self.ping_s - time.monotonic(), 0.0))
                if time.monotonic() - last_sent >= self.ping_s:
                    async with sending:
                        await send({"type": "http.response.body", "body": PING, "more_body": True})
                    mark_sent()

        pinger = asyncio.create_task(ping(), name="ragbus:sse-ping")
        try:
            async for chunk in self.events:
                async with sending:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                mark_sent()
        finally:
            pinger.cancel()
            await asyncio.gather(pinger, return_exceptions=True)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _aclose(events: AsyncIterator[bytes]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()
