"""Running a uvicorn server in the background of an asyncio program."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence

import uvicorn


@contextlib.asynccontextmanager
async def in_background(
    server: uvicorn.Server, *, name: str, sockets: Sequence[socket.socket] | None = None
) -> AsyncIterator[uvicorn.Server]:
    """Serve with ``server`` while the block runs; return once it has shut down.

    Parameters:
        server: the uvicorn server.
        name: the serving task's name (for debugging).
        sockets: already-bound sockets to serve on (default: uvicorn binds its
            configured host and port).

    Raises whatever stopped the server at start-up (a bind error, say).
    """
    task = asyncio.create_task(
        server.serve(sockets=list(sockets) if sockets is not None else None), name=name
    )
    while not server.started:
        if task.done():
            task.result()  # raises the start-up error
            raise RuntimeError(f"{name} stopped at start-up")
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        await task


def bound_port(server: uvicorn.Server) -> int:
    """The TCP port ``server`` listens on (useful with port 0)."""
    sockets = [sock for s in server.servers for sock in s.sockets]
    return int(sockets[0].getsockname()[1])
