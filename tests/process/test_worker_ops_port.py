"""Where a ``ragbus worker`` serves ``/healthz`` and ``/metrics``: several workers on one
host each find a port; a port the operator chose and cannot have is one clear line; a
worker told to stop while it is still connecting stops."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from ragbus.cli_common import ExitCode
from ragbus.ops_http import DEFAULT_OPS_PORT
from tests.polling import wait_until
from tests.process.workers import OPS_LINE, Workers, ragbus_command

pytestmark = pytest.mark.rabbitmq


@contextlib.contextmanager
def default_port_taken() -> Iterator[None]:
    """Hold the default ops port for the block (unless something else already does)."""
    holder = None
    with contextlib.suppress(OSError):
        holder = socket.create_server(("127.0.0.1", DEFAULT_OPS_PORT))
    try:
        yield
    finally:
        if holder is not None:
            holder.close()


@pytest.mark.timeout(120)
async def test_two_workers_on_one_host_each_take_a_free_port_and_say_which(
    workers: Workers,
) -> None:
    with default_port_taken():
        started = [
            workers.spawn(argv=ragbus_command("worker", "--stages", "retrieve")) for _ in range(2)
        ]
        await asyncio.gather(*(worker.wait_ready(60) for worker in started))

        ports = [worker.port for worker in started]
        assert None not in ports and len(set(ports)) == 2, ports
        assert DEFAULT_OPS_PORT not in ports
        for worker in started:
            assert worker.alive
            assert f"port {DEFAULT_OPS_PORT} is taken" in worker.log
            match = OPS_LINE.search(worker.log)
            assert match is not None and int(match["port"]) == worker.port
            status, report = await worker.healthz()
            assert status == 200 and report["ok"] is True


@pytest.mark.timeout(60)
async def test_a_port_chosen_and_taken_is_one_line_before_any_connection(
    workers: Workers,
) -> None:
    """The port is bound before the worker connects: an unreachable broker does not
    hide the mistake behind a connection error."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        worker = workers.spawn(
            argv=ragbus_command("worker", "--port", str(port)),
            amqp_url="amqp://nobody:secret@127.0.0.1:1/",
        )
        code = await worker.wait_exit(40)

    assert code == ExitCode.CONFIGURATION
    assert worker.log.splitlines()[1:] == [
        f"error: cannot serve /healthz and /metrics on 127.0.0.1:{port}: Address already in "
        "use; choose another --port (0 picks a free one) or stop what uses it"
    ]


@pytest.mark.timeout(60)
async def test_sigterm_while_connecting_stops_the_worker(workers: Workers) -> None:
    """A broker address that accepts TCP but never answers AMQP: the worker waits in its
    connection, and SIGTERM must still end it, with exit 0 (it took nothing)."""
    silent = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    loop = asyncio.get_running_loop()

    async def accept() -> None:
        while True:
            connection, _ = await loop.sock_accept(silent)
            accepted.append(connection)

    silent.setblocking(False)
    acceptor = asyncio.create_task(accept())
    try:
        worker = workers.spawn(
            argv=ragbus_command("worker", "--port", "0"),
            amqp_url=f"amqp://u:p@127.0.0.1:{silent.getsockname()[1]}/",
        )
        await wait_until(
            lambda: bool(accepted),
            what="a connection to the broker",
            timeout=30,
            report=worker.describe,
        )
        worker.terminate()
        stopped_at = time.monotonic()
        code = await worker.wait_exit(15)
    finally:
        acceptor.cancel()
        for connection in accepted:
            connection.close()
        silent.close()
    assert code == 0, worker.describe()
    assert time.monotonic() - stopped_at < 10
    assert "stopped before it reached the broker" in worker.log
