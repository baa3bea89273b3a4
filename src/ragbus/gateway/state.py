"""What the gateway's routes share: settings, the client, chat sessions and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from ragbus.client import Client
from ragbus.config import Settings
from ragbus.gateway.admission import Admission
from ragbus.gateway.clients import client_key
from ragbus.gateway.errors import RequestError
from ragbus.gateway.intake import EventIntake
from ragbus.gateway.metrics import GatewayMetrics
from ragbus.gateway.sessions import SessionStore
from ragbus.pool_metrics import PoolMetrics, shared_metrics


@dataclass
class GatewayState:
    """The gateway's shared state, kept on ``app.state.gateway``.

    Parameters:
        settings: the gateway's settings (timeouts, limits, sessions).
        client: the client that asks and publishes.
        sessions: the chat sessions of ``/v1/ws``.
        metrics: the gateway's own metrics.
        admission: rate limits and caps on open asks, streams and WebSockets.
        intake: what ``POST /v1/events`` accepts and how it stamps events.
        owns_client: whether the app opens and closes ``client`` in its lifespan (it
            does when it built the client).
        pool_metrics: the metrics of every process of ``ragbus serve --workers``, which
            ``/metrics`` serves instead of this process's (default: read from the
            environment; None outside a pool).
    """

    settings: Settings
    client: Client
    sessions: SessionStore
    metrics: GatewayMetrics
    admission: Admission
    intake: EventIntake
    owns_client: bool
    pool_metrics: PoolMetrics | None = field(default_factory=shared_metrics)

    def timeout(self, asked: float | None) -> float:
        """The wait for an answer: ``asked`` or the default; raises :class:`RequestError`
        (422) past ``gateway_max_timeout_s``."""
        limit = self.settings.gateway_max_timeout_s
        if asked is not None and asked > limit:
            raise RequestError(
                422, "invalid_request", f"timeout: must be at most {limit:g} seconds"
            )
        return asked if asked is not None else min(self.settings.gateway_timeout_s, limit)

    def client_of(self, connection: HTTPConnection) -> str:
        """The key ``connection``'s limits count against (see
        :func:`~ragbus.gateway.clients.client_key`)."""
        return client_key(connection, self.settings)

    async def check_rate(self, connection: HTTPConnection) -> str:
        """Count a request against its client's rate limit and return the client's key;
        raises :class:`RequestError` (429) beyond the limit."""
        client = self.client_of(connection)
        await self.admission.check_rate(client)
        return client

    def require_open(self) -> Client:
        """The client, or :class:`RequestError` (503) when it is not connected."""
        if not self.client.is_open:
            raise RequestError(503, "unavailable", "the gateway is not connected to the bus")
        return self.client


def gateway_state(connection: HTTPConnection | Starlette) -> GatewayState:
    """The :class:`GatewayState` of the app serving ``connection`` (or of the app)."""
    app = connection if isinstance(connection, Starlette) else connection.app
    state = app.state.gateway
    assert isinstance(state, GatewayState)
    return state
