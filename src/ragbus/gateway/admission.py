"""What a request must pass before the gateway works for it: the client's rate limit
and the caps on asks, streams and WebSockets open at once."""

from __future__ import annotations

from ragbus.config import Settings
from ragbus.gateway.concurrency import Slots
from ragbus.gateway.errors import RequestError
from ragbus.gateway.rate_limit import ClientRateLimit


class Admission:
    """The gateway's limits, built from its settings.

    Parameters:
        settings: ``RAGBUS_GATEWAY_MAX_ASKS``, ``_MAX_STREAMS``, ``_MAX_WEBSOCKETS``,
            ``_MAX_PER_CLIENT``, ``_RATE_LIMIT`` (empty: no rate limit) and
            ``_RATE_LIMIT_STORAGE``.
    """

    def __init__(self, settings: Settings) -> None:
        per_client = settings.gateway_max_per_client
        self.asks = Slots(
            "asks",
            total=settings.gateway_max_asks,
            per_client=per_client,
            setting="RAGBUS_GATEWAY_MAX_ASKS",
        )
        self.streams = Slots(
            "streams",
            total=settings.gateway_max_streams,
            per_client=per_client,
            setting="RAGBUS_GATEWAY_MAX_STREAMS",
        )
        self.websockets = Slots(
            "WebSocket connections",
            total=settings.gateway_max_websockets,
            per_client=per_client,
            setting="RAGBUS_GATEWAY_MAX_WEBSOCKETS",
        )
        self.rate: ClientRateLimit | None = None
        if settings.gateway_rate_limit:
            self.rate = ClientRateLimit(
                settings.gateway_rate_limit,
                settings.gateway_rate_limit_storage.get_secret_value(),
                namespace=settings.cache_namespace,
            )

    async def check_rate(self, client: str) -> None:
        """Count one request of ``client``; raises :class:`RequestError` (429, with
        ``Retry-After``) when it is over its rate limit."""
        if self.rate is None:
            return
        wait = await self.rate.hit(client)
        if wait is not None:
            raise RequestError(
                429,
                "rate_limited",
                f"too many requests from this client (limit {self.rate.describe()}, "
                f"RAGBUS_GATEWAY_RATE_LIMIT): retry in {wait:g} s",
                headers={"Retry-After": f"{wait:g}"},
            )
