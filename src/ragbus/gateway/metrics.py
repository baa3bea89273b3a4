"""The gateway's Prometheus metrics, and the middleware that counts requests."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Buckets of the answer and first-token latencies, in seconds.
SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    """What the gateway exports on ``/metrics`` (besides the in-process stages' metrics).

    Parameters:
        registry: where to register them (default: a new private registry).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ragbus_gateway_requests",
            "HTTP requests and WebSocket connections, by route and status",
            ["route", "status"],
            registry=r,
        )
        self.streams = Gauge(
            "ragbus_gateway_open_streams",
            "Answers being streamed (SSE) and WebSocket connections open",
            ["kind"],
            registry=r,
            multiprocess_mode="livesum",  # `serve --workers`: over the live processes
        )
        self.first_token = Histogram(
            "ragbus_gateway_first_token_seconds",
            "Time from a streamed question to its first answer token",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.answer = Histogram(
            "ragbus_gateway_answer_seconds",
            "Time from a question to its answer, by route",
            ["route"],
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.caught_up = Counter(
            "ragbus_gateway_tokens_caught_up",
            "Streamed answers whose tokens fell short (cached, or tokens dropped under "
            "load) and whose rest was sent as one last token",
            registry=r,
        )
        self.sessions = Gauge(
            "ragbus_gateway_chat_sessions",
            "Chat sessions kept in memory",
            registry=r,
            multiprocess_mode="livesum",
        )

    def render(self) -> bytes:
        """The metrics in Prometheus's text format."""
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Counts every request by route and status (unknown paths count as ``other``, so
    the label set stays bounded).

    Parameters:
        app: the app to wrap.
        metrics: where to count.
        routes: the paths counted under their own name.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, routes: Iterable[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in self.routes else "other"
        status = {"code": 0}

        async def sending(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                status["code"] = message["status"]
            elif kind == "websocket.accept":
                status["code"] = 101
            elif (
                kind in ("websocket.close", "websocket.http.response.start") and not status["code"]
            ):
                status["code"] = message.get("status", 403)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(route, str(status["code"] or 500)).inc()
