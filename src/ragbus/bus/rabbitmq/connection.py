"""The bus's connection to the broker: opened with retries, robust once open.

Opening retries with backoff until ``connect_timeout`` seconds have passed, one log
line per failed attempt, then raises :class:`~ragbus.bus.errors.BrokerUnavailableError`
(a broker that refuses the login raises :class:`~ragbus.bus.errors.BrokerRefusedError`
at once: trying again cannot help). Once open, the connection is aio-pika's robust
connection: it reconnects by itself and restores the channels opened on it.

Every attempt goes to one of :attr:`BrokerConnection.nodes`, in turn. There is one node
today (``RAGBUS_AMQP_URL``); a cluster's list of nodes would be tried here, and a
reconnect moved to the next node, without changing the rest of the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Final
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aiormq.exceptions import AMQPConnectionError, ProbableAuthenticationError

from ragbus.bus.errors import BrokerRefusedError, BrokerUnavailableError, BusError
from ragbus.config.urls import MASK, mask_url

logger = logging.getLogger(__name__)

#: Seconds before the second attempt to connect; doubled after each failure.
FIRST_RETRY_S: Final = 0.5

#: Longest wait between two attempts to connect, in seconds.
MAX_RETRY_S: Final = 5.0

#: Longest a single attempt may take (a host that drops packets never refuses).
ATTEMPT_TIMEOUT_S: Final = 10.0

#: Seconds to wait for the broker's answer when closing.
CLOSE_TIMEOUT_S: Final = 5.0

#: What a failed attempt to connect raises (refused, reset, unresolvable, too slow).
_CONNECT_ERRORS: Final = (AMQPConnectionError, ConnectionError, OSError, asyncio.TimeoutError)


class _TransportErrorFilter(logging.Filter):
    """Drops aiormq's own error line for each failed attempt to connect: the bus logs
    one line per attempt itself, with the URL masked and what happens next."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error when creating transport")


logging.getLogger("aiormq.connection").addFilter(_TransportErrorFilter())


class BrokerConnection:
    """One robust connection to the broker, and short-lived channels on it.

    Parameters:
        url: the AMQP URL (a secret: messages show it masked).
        name: the connection's name on the broker (``rabbitmqctl list_connections
            client_properties`` shows it).
        reconnect_interval: seconds between reconnection attempts once connected
            (default 1.0).
        connect_timeout: how long :meth:`open` keeps trying, in seconds; 0 makes one
            attempt only (default 60).
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
        self.nodes: tuple[str, ...] = (url,)
        self.name = name
        self.reconnect_interval = reconnect_interval
        self.connect_timeout = connect_timeout
        self._connection: AbstractRobustConnection | None = None

    @property
    def masked_url(self) -> str:
        """The broker's URL with the password masked, for messages."""
        return mask_url(",".join(self.nodes))

    @property
    def robust(self) -> AbstractRobustConnection:
        """The open connection; :class:`BusError` before :meth:`open`."""
        if self._connection is None:
            raise BusError("the bus is not connected: call connect() first")
        return self._connection

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` succeeded and :meth:`close` was not called since."""
        return self._connection is not None and not self._connection.is_closed

    @property
    def is_connected(self) -> bool:
        """Open, and connected right now (not between a drop and its reconnect)."""
        connection = self._connection
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    def on_reconnect(self, callback: Callable[..., Any]) -> None:
        """Call ``callback`` each time the connection has reconnected and restored its
        channels.

        Parameters:
            callback: called with aio-pika's arguments (the connection).
        """
        self.robust.reconnect_callbacks.add(callback)

    async def open(self) -> None:
        """Connect, trying again with backoff until :attr:`connect_timeout` has passed.

        Raises:
            BrokerUnavailableError: no attempt reached the broker in time.
            BrokerRefusedError: the broker refused the login.
        """
        if self.is_open:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.connect_timeout
        backoff = FIRST_RETRY_S
        attempt = 0
        while True:
            node = self.nodes[attempt % len(self.nodes)]
            attempt += 1
            try:
                self._connection = await aio_pika.connect_robust(
                    node,
                    timeout=max(1.0, min(ATTEMPT_TIMEOUT_S, deadline - loop.time())),
                    reconnect_interval=self.reconnect_interval,
                    client_properties={"connection_name": self.name},
                )
            except ProbableAuthenticationError as exc:
                raise BrokerRefusedError(
                    f"the RabbitMQ broker at {mask_url(node)} refused the login ({exc}): "
                    "check the user, password and vhost in RAGBUS_AMQP_URL"
                ) from exc
            except _CONNECT_ERRORS as exc:
                now = loop.time()
                reason = _describe(exc, node)
                if now >= deadline:
                    tried = (
                        f"{attempt} attempts in {now - started:.1f}s"
                        if attempt > 1
                        else "1 attempt"
                    )
                    raise BrokerUnavailableError(
                        f"cannot reach the RabbitMQ broker at {self.masked_url} ({reason}; "
                        f"{tried}): start it, or point RAGBUS_AMQP_URL at a running broker"
                        + (
                            " (RAGBUS_CONNECT_TIMEOUT_S sets how long to keep trying)"
                            if self.connect_timeout
                            else ""
                        )
                    ) from exc
                wait = min(backoff, deadline - now)
                logger.warning(
                    "cannot reach the RabbitMQ broker at %s (attempt %d: %s); trying again "
                    "in %.1fs, for %.1fs more at most",
                    mask_url(node),
                    attempt,
                    reason,
                    wait,
                    deadline - now,
                )
                await asyncio.sleep(wait)
                backoff = min(backoff * 2, MAX_RETRY_S)
            else:
                if attempt > 1:
                    logger.warning(
                        "connected to the RabbitMQ broker at %s (attempt %d)",
                        mask_url(node),
                        attempt,
                    )
                return

    async def close(self) -> None:
        """Close the connection (no reconnects after this); idempotent."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT_S)

    @contextlib.asynccontextmanager
    async def channel(self) -> AsyncIterator[AbstractChannel]:
        """A short-lived plain channel (no confirms), closed after the block.

        Unlike the robust channels of publishing and consuming, it is never reopened or
        restored: a declaration the broker refuses, or a passive declaration of a queue
        that does not exist, closes it and ends the block with the error, and nothing
        it declared is redeclared after a reconnect.
        """
        channel = aio_pika.Channel(self.robust, publisher_confirms=False)
        await channel.initialize()
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
