"""A TCP proxy a test can cut and restore: an outage of a shared service (Redis,
RabbitMQ) for the code under test only, without touching the service itself.

It runs in a thread with its own event loop, so it forwards whatever the test's loop
is doing, and processes the test starts can connect through it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

#: Bytes read at once from either side.
_CHUNK = 65_536


@dataclass
class TcpProxy:
    """Forwards connections from ``127.0.0.1:<port>`` to ``target_host:target_port``.

    While cut, every open connection is closed and new ones are closed as soon as
    they are accepted, as when the service goes down; restored, it forwards again.
    Use :func:`start_proxy`.

    Parameters:
        target_host: where connections go.
        target_port: the target's port.
    """

    target_host: str
    target_port: int
    port: int = 0
    cut_count: int = 0
    connections: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _open: set[asyncio.StreamWriter] = field(default_factory=set)
    _is_cut: bool = False

    def url_for(self, url: str) -> str:
        """``url`` (``redis://host:port/0``, ``amqp://...``) pointed at this proxy."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@" if credentials else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{self.port}"))

    @property
    def is_cut(self) -> bool:
        return self._is_cut

    def cut(self) -> None:
        """Close every connection and refuse new ones until :meth:`restore`."""
        self._call(self._cut())

    def restore(self) -> None:
        """Forward new connections again."""
        self._is_cut = False

    def stop(self) -> None:
        """Close every connection, stop listening and end the thread."""
        if self._loop is None:
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._loop = None

    # -- in the proxy's thread --------------------------------------------------------

    def _call(self, coroutine: object) -> None:
        assert self._loop is not None, "the proxy is not running"
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)  # type: ignore[arg-type]

    async def _cut(self) -> None:
        self._is_cut = True
        self.cut_count += 1
        for writer in list(self._open):
            writer.close()
        self._open.clear()

    async def _stop(self) -> None:
        await self._cut()
        if self._server is not None:
            self._server.close()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _serve(self, ready: threading.Event) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()

    async def _accept(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        if self._is_cut:
            client_out.close()
            return
        try:
            server_in, server_out = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            client_out.close()
            return
        self.connections += 1
        self._open.update((client_out, server_out))
        try:
            await asyncio.gather(
                self._pipe(client_in, server_out), self._pipe(server_in, client_out)
            )
        except asyncio.CancelledError:
            pass  # the proxy stops; asyncio's stream callback must not see a cancelled task
        finally:
            for writer in (client_out, server_out):
                self._open.discard(writer)
                writer.close()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            while data := await source.read(_CHUNK):
                if self._is_cut:
                    break
                sink.write(data)
                await sink.drain()
        sink.close()


def start_proxy(url: str, *, port: int = 0) -> TcpProxy:
    """A running proxy to the host and port of ``url``; stop it with :meth:`TcpProxy.stop`.

    Parameters:
        url: the service's URL (only its host and port are used).
        port: the local port to listen on (default 0: a free one); a test that started
            a process against a port nobody listened on yet passes that port.
    """
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 0, port=port)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    proxy._loop = loop

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(proxy._serve(ready))
        loop.run_forever()
        loop.close()

    proxy._thread = threading.Thread(target=run, name="tcp-proxy", daemon=True)
    proxy._thread.start()
    if not ready.wait(timeout=10):
        raise RuntimeError("the TCP proxy did not start")
    return proxy


def free_port() -> int:
    """A local TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def proxies_to(url: str, count: int) -> Iterator[list[TcpProxy]]:
    """``count`` running proxies to the service of ``url``, stopped afterwards (e.g. the
    "nodes" of a cluster: cutting one is losing that node)."""
    started: list[TcpProxy] = []
    try:
        for _ in range(count):
            started.append(start_proxy(url))
        yield started
    finally:
        for proxy in started:
            proxy.stop()


def unreachable_url(url: str) -> str:
    """``url``, with its user and password, at a local port nobody listens on."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@" if credentials else ""
    return urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{free_port()}"))
