"""The bus's connection to the broker: one node of a cluster at a time, and failover.

``RAGBUS_AMQP_URL`` names one node, or the nodes of a cluster separated by commas
(``amqp://u:p@rabbit-1/,amqp://u:p@rabbit-2/``). :class:`BrokerConnection` holds one AMQP
connection, to one node:

- :meth:`BrokerConnection.open` tries the nodes in the order given, round after round,
  with backoff between rounds, until ``connect_timeout`` seconds have passed (one log
  line per failed attempt, URL masked); then it raises
  :class:`~ragbus.bus.errors.BrokerUnavailableError`. Every node is tried at least once,
  so a one-shot command (``connect_timeout=0``) tries each node once. A broker that
  refuses the login raises :class:`~ragbus.bus.errors.BrokerRefusedError` at once (the
  users of a cluster are the same on every node: trying again cannot help).
- Once open, a supervisor task watches the connection. When it is lost (the node
  stopped, the network dropped it, the broker closed it), the supervisor connects again,
  to the *next* node first and to the lost one last, round after round with backoff
  (from ``reconnect_interval`` doubling to :data:`MAX_RETRY_S`) until one accepts, then
  runs the restore hooks (:meth:`BrokerConnection.on_restore`: the consumers declare
  their queues again and resume consuming) and the reconnect callbacks. It never gives
  up while the bus is open.

aio-pika's robust connection reconnects to the one URL it was given (10.x has no way to
give it several), so failover is done here, with plain connections and channels: after a
reconnect everything the bus needs is declared and consumed again by its owners, in the
open, rather than replayed by aio-pika behind their back (its replay has left consumers
missing: aio-pika #231).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import AMQPConnectionError, ProbableAuthenticationError

from ragbus.bus.errors import BrokerRefusedError, BrokerUnavailableError, BusError
from ragbus.config.urls import MASK, mask_url

logger = logging.getLogger(__name__)

#: Seconds before the second round of attempts to connect; doubled after each round.
FIRST_RETRY_S: Final = 0.5

#: Longest wait between two rounds of attempts to connect, in seconds.
MAX_RETRY_S: Final = 5.0

#: Longest a single attempt may take (a host that drops packets never refuses).
ATTEMPT_TIMEOUT_S: Final = 10.0

#: Seconds to wait for the broker's answer when closing.
CLOSE_TIMEOUT_S: Final = 5.0

#: What a failed attempt to connect raises (refused, reset, unresolvable, too slow).
_CONNECT_ERRORS: Final = (AMQPConnectionError, ConnectionError, OSError, asyncio.TimeoutError)

#: A hook run after each reconnect (see :meth:`BrokerConnection.on_restore`).
RestoreHook = Callable[[], Awaitable[None]]


class _TransportErrorFilter(logging.Filter):
    """Drops aiormq's own lines for a failed attempt to connect and for a lost
    connection (with a traceback): the bus logs one line for each itself, with the URL
    masked and what happens next."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not message.startswith(
            ("error when creating transport", "Cancelling cause reader exited abnormally")
        )


logging.getLogger("aiormq.connection").addFilter(_TransportErrorFilter())


def split_nodes(url: str) -> tuple[str, ...]:
    """The node URLs of ``url``: one URL, or several separated by commas (blanks around
    them ignored).

    Parameters:
        url: e.g. ``amqp://u:p@rabbit-1:5672/,amqp://u:p@rabbit-2:5672/``.

    Raises:
        ValueError: no URL in ``url``.
    """
    nodes = tuple(part.strip() for part in url.split(",") if part.strip())
    if not nodes:
        raise ValueError("the AMQP URL names no node")
    return nodes


def node_address(url: str) -> str:
    """``host:port`` of a node URL, for messages (never its password)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "?", parts.port or 5672
    except ValueError:
        return "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class BrokerConnection:
    """One connection to one node of the broker, moved to another node when lost.

    Parameters:
        url: the AMQP URL of one node, or of several separated by commas (a secret:
            messages show it masked).
        name: the connection's name on the broker (``rabbitmqctl list_connections
            client_properties`` shows it).
        reconnect_interval: seconds between rounds of attempts to reconnect once the
            connection was lost, doubled after each round up to :data:`MAX_RETRY_S`
            (default 1.0; the first round starts at once).
        connect_timeout: how long :meth:`open` keeps trying, in seconds; 0 makes one
            round (each node once) (default 60).
    """

    def __init__(
        self,
        url: str,
        *,
        name: str,
        reconnect_interval: float = 1.0,
        connect_timeout: float = 60.0,
    ) -> None:
        if connect_timeout < 0:
            raise ValueError("connect_timeout must be at least 0 seconds")
        self.nodes: tuple[str, ...] = split_nodes(url)
        self.name = name
        self.reconnect_interval = reconnect_interval
        self.connect_timeout = connect_timeout
        self._connection: AbstractConnection | None = None
        self._opened = False  # open() succeeded, close() not called since
        self._node = 0  # index in nodes of the node connected to, or last connected to
        self._lost = asyncio.Event()
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._restore_hooks: list[RestoreHook] = []
        self._reconnect_callbacks: list[Callable[..., Any]] = []
        self._up = asyncio.Event()
        self._closing_tasks: set[asyncio.Task[None]] = set()

    @property
    def masked_url(self) -> str:
        """Every node's URL with the password masked, for messages."""
        return mask_url(",".join(self.nodes))

    @property
    def node(self) -> str:
        """The URL of the node connected to now (or last), masked: for messages."""
        return mask_url(self.nodes[self._node])

    @property
    def current(self) -> AbstractConnection:
        """The open connection; :class:`BusError` before :meth:`open` or while it is
        being replaced."""
        connection = self._connection
        if connection is None or connection.is_closed or not connection.connected.is_set():
            if self._opened:
                raise BusError(
                    f"the connection to the RabbitMQ broker at {self.node} was lost; reconnecting"
                )
            raise BusError("the bus is not connected: call connect() first")
        return connection

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` succeeded and :meth:`close` was not called since."""
        return self._opened

    @property
    def is_connected(self) -> bool:
        """Open, and connected right now (not between a loss and its reconnect)."""
        connection = self._connection
        return (
            connection is not None
            and not self._closing
            and not connection.is_closed
            and connection.connected.is_set()
            and not self._lost.is_set()
        )

    def on_restore(self, hook: RestoreHook) -> None:
        """Run ``hook()`` after each reconnect, before the reconnect callbacks; hooks run
        in the order they were added. An exception of a hook is logged and the next hook
        runs (the consumers' watchdog retries what a hook could not restore).

        Parameters:
            hook: a coroutine function without arguments.
        """
        self._restore_hooks.append(hook)

    def on_reconnect(self, callback: Callable[..., Any]) -> None:
        """Call ``callback(self)`` each time the connection has reconnected (to any node)
        and the restore hooks have run.

        Parameters:
            callback: a function of this connection; its result is awaited when it is
                awaitable.
        """
        self._reconnect_callbacks.append(callback)

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the connection to be up; whether it is.

        Parameters:
            timeout: seconds to wait at most.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self.is_connected:
                    if not self._opened:
                        return False
                    await self._up.wait()
                    if not self.is_connected:
                        await asyncio.sleep(0.05)  # it was lost again at once
        return self.is_connected

    # -- opening --------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect to the first node that accepts, round after round with backoff until
        :attr:`connect_timeout` has passed, then watch the connection.

        Raises:
            BrokerUnavailableError: no node was reached in time.
            BrokerRefusedError: a node refused the login.
        """
        if self._opened:
            return
        self._closing = False
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.connect_timeout
        backoff = FIRST_RETRY_S
        attempts = 0
        while True:
            reasons: list[tuple[int, int, str]] = []  # (node, attempt, reason)
            for index in range(len(self.nodes)):
                attempts += 1
                try:
                    connection = await self._connect(
                        index, timeout=max(1.0, min(ATTEMPT_TIMEOUT_S, deadline - loop.time()))
                    )
                except ProbableAuthenticationError as exc:
                    raise BrokerRefusedError(
                        f"the RabbitMQ broker at {mask_url(self.nodes[index])} refused the "
                        f"login ({exc}): check the user, password and vhost in RAGBUS_AMQP_URL"
                    ) from exc
                except _CONNECT_ERRORS as exc:
                    reasons.append((index, attempts, _describe(exc, self.nodes[index])))
                    continue
                if attempts > 1:
                    logger.warning(
                        "connected to the RabbitMQ broker at %s (attempt %d%s)",
                        mask_url(self.nodes[index]),
                        attempts,
                        "".join(
                            f"; {node_address(self.nodes[i])}: {reason}" for i, _, reason in reasons
                        ),
                    )
                self._adopt(connection, index)
                self._opened = True
                self._supervisor = asyncio.create_task(self._supervise(), name="ragbus:amqp")
                return
            now = loop.time()
            if now >= deadline:
                raise self._unavailable(reasons, attempts, now - started)
            wait = min(backoff, deadline - now)
            for index, attempt, reason in reasons:
                logger.warning(
                    "cannot reach the RabbitMQ broker at %s (attempt %d: %s); trying again "
                    "in %.1fs, for %.1fs more at most",
                    mask_url(self.nodes[index]),
                    attempt,
                    reason,
                    wait,
                    deadline - now,
                )
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, MAX_RETRY_S)

    def _unavailable(
        self, reasons: Sequence[tuple[int, int, str]], attempts: int, elapsed: float
    ) -> BrokerUnavailableError:
        """The error of :meth:`open` giving up; ``reasons`` are the last round's."""
        if len(self.nodes) == 1:
            why = reasons[-1][2]
        else:
            why = "; ".join(f"{node_address(self.nodes[i])}: {reason}" for i, _, reason in reasons)
        tried = f"{attempts} attempts in {elapsed:.1f}s" if attempts > 1 else "1 attempt"
        return BrokerUnavailableError(
            f"cannot reach the RabbitMQ broker at {self.masked_url} ({why}; {tried}): start "
            "it, or point RAGBUS_AMQP_URL at a running broker"
            + (
                " (RAGBUS_CONNECT_TIMEOUT_S sets how long to keep trying)"
                if self.connect_timeout
                else ""
            )
        )

    async def _connect(self, index: int, *, timeout: float) -> AbstractConnection:
        """One attempt to connect to node ``index``."""
        connection = await aio_pika.connect(
            self.nodes[index],
            timeout=timeout,
            client_properties={"connection_name": self.name},
        )
        return connection

    def _adopt(self, connection: AbstractConnection, index: int) -> None:
        """Make ``connection`` (to node ``index``) the current one and watch it."""

        def lost(sender: object, *args: object) -> None:
            if sender is self._connection and not self._closing:
                self._up.clear()
                self._lost.set()

        connection.close_callbacks.add(lost)
        self._connection = connection
        self._node = index
        self._lost.clear()
        self._up.set()

    # -- failover -------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Reconnect each time the connection is lost, until :meth:`close`."""
        while not self._closing:
            await self._lost.wait()
            if self._closing:
                return
            self._up.clear()
            lost = self._node
            logger.warning(
                "lost the connection to the RabbitMQ broker at %s; reconnecting%s",
                mask_url(self.nodes[lost]),
                " to another node" if len(self.nodes) > 1 else "",
            )
            old, self._connection = self._connection, None
            if old is not None:
                self._close_in_background(old)
            await self._reconnect(lost)
            await self._restore()

    async def _reconnect(self, lost: int) -> None:
        """Connect again: the node after ``lost`` first, ``lost`` last; round after
        round, with backoff between rounds, until a node accepts."""
        backoff = self.reconnect_interval
        order = [(lost + offset) % len(self.nodes) for offset in range(1, len(self.nodes) + 1)]
        attempts = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            for index in order:
                attempts += 1
                try:
                    connection = await self._connect(index, timeout=ATTEMPT_TIMEOUT_S)
                except (ProbableAuthenticationError, *_CONNECT_ERRORS) as exc:
                    logger.warning(
                        "cannot reach the RabbitMQ broker at %s (reconnect attempt %d: %s)",
                        mask_url(self.nodes[index]),
                        attempts,
                        _describe(exc, self.nodes[index]),
                    )
                    continue
                self._adopt(connection, index)
                logger.warning(
                    "reconnected to the RabbitMQ broker at %s after %.1fs (attempt %d)",
                    mask_url(self.nodes[index]),
                    loop.time() - started,
                    attempts,
                )
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_RETRY_S)

    async def _restore(self) -> None:
        """Run the restore hooks, then the reconnect callbacks (errors are logged)."""
        for hook in self._restore_hooks:
            try:
                await hook()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("restoring after a reconnect failed")
        for callback in self._reconnect_callbacks:
            try:
                result = callback(self)
                if asyncio.iscoroutine(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("a reconnect callback failed")

    # -- closing and channels -------------------------------------------------------------

    async def close(self) -> None:
        """Close the connection (no reconnects after this); idempotent."""
        self._closing = True
        self._opened = False
        self._up.set()  # wake whoever waits for a reconnect: there will be none
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        connection, self._connection = self._connection, None
        if connection is not None:
            closing = self._close_in_background(connection)
            await asyncio.wait({closing}, timeout=CLOSE_TIMEOUT_S)

    def _close_in_background(self, connection: AbstractConnection) -> asyncio.Task[None]:
        """Close ``connection`` in a task of its own, kept until it is done. Closing a
        connection whose transport is already gone can wait on aiormq for a long time,
        and ignores a cancellation while it does: nothing waits for it longer than
        :data:`CLOSE_TIMEOUT_S`, and nothing cancels it."""

        async def close() -> None:
            with contextlib.suppress(Exception):
                await connection.close()

        task = asyncio.create_task(close(), name="ragbus:amqp:close")
        self._closing_tasks.add(task)
        task.add_done_callback(self._closing_tasks.discard)
        return task

    async def new_channel(
        self, *, publisher_confirms: bool, on_return_raises: bool = False
    ) -> AbstractChannel:
        """A new channel on the current connection; its owner reopens it after a
        reconnect (see :meth:`on_restore`).

        Parameters:
            publisher_confirms: whether the broker confirms each publish.
            on_return_raises: whether a returned ``mandatory`` message raises (needs
                confirms; default False).
        """
        channel = self.current.channel(
            publisher_confirms=publisher_confirms, on_return_raises=on_return_raises
        )
        # Opening waits for the connection to be ready, which a connection lost a moment
        # ago never is again: do not wait for it forever.
        await asyncio.wait_for(channel.initialize(), ATTEMPT_TIMEOUT_S)
        return channel

    @contextlib.asynccontextmanager
    async def channel(self) -> AsyncIterator[AbstractChannel]:
        """A short-lived plain channel (no confirms), closed after the block.

        A declaration the broker refuses, or a passive declaration of a queue that does
        not exist, closes it and ends the block with the error; nothing declared on it is
        declared again after a reconnect.
        """
        channel = await self.new_channel(publisher_confirms=False)
        try:
            yield channel
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), CLOSE_TIMEOUT_S)


def _describe(exc: BaseException, url: str) -> str:
    """A short reason for a failed attempt to reach ``url``, never its password."""
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer in time"
    if isinstance(exc, ConnectionRefusedError) or "Connect call failed" in str(exc):
        return "connection refused"
    text = " ".join(str(exc).split()) or type(exc).__name__
    password = urlsplit(url).password
    if password:
        text = text.replace(password, MASK)
    return text if len(text) <= 120 else text[:119] + "…"
