"""The gateway's Starlette app: routes, middleware and lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Route, WebSocketRoute

from ragbus.client import Client
from ragbus.config import Settings
from ragbus.gateway.admission import Admission
from ragbus.gateway.auth import BearerAuthMiddleware
from ragbus.gateway.errors import (
    RequestError,
    on_http_exception,
    on_request_error,
    on_unexpected_error,
)
from ragbus.gateway.headers import SecurityHeadersMiddleware
from ragbus.gateway.hosts import HostGuardMiddleware
from ragbus.gateway.intake import EventIntake
from ragbus.gateway.limits import BodySizeLimitMiddleware
from ragbus.gateway.metrics import GatewayMetrics, RequestMetricsMiddleware
from ragbus.gateway.openapi import openapi
from ragbus.gateway.origins import OriginGuardMiddleware
from ragbus.gateway.routes.ask import ask
from ragbus.gateway.routes.asyncapi import asyncapi
from ragbus.gateway.routes.chat import chat
from ragbus.gateway.routes.events import publish_event
from ragbus.gateway.routes.ops import healthz, metrics, readyz
from ragbus.gateway.routes.page import index
from ragbus.gateway.routes.status import pipeline_status
from ragbus.gateway.routes.stream import ask_stream
from ragbus.gateway.sessions import SessionStore
from ragbus.gateway.state import GatewayState, gateway_state
from ragbus.observability.http import tracing_middleware
from ragbus.pipeline import Pipeline


def gateway_routes() -> list[BaseRoute]:
    """Every route of the gateway."""
    return [
        Route("/", index, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/asyncapi.json", asyncapi, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/status", pipeline_status, methods=["GET"]),
        Route("/v1/ask", ask, methods=["POST"]),
        Route("/v1/ask/stream", ask_stream, methods=["POST"]),
        Route("/v1/events", publish_event, methods=["POST"]),
        WebSocketRoute("/v1/ws", chat),
    ]


def create_app(
    settings: Settings, client: Client | None = None, *, pipeline: Pipeline | None = None
) -> Starlette:
    """The gateway app.

    With no ``client``, the app builds one from ``settings`` that follows answer tokens
    (on the memory bus it runs the pipeline in process, with streaming; on RabbitMQ it
    talks to the workers) and opens and closes it with its lifespan. A given ``client``
    is the caller's: open it before serving and close it after. Build it with
    ``follow_tokens=True`` to stream tokens (without, each answer streams as one token).

    Middleware, outermost first: request metrics, security headers, the ``Host``
    allow-list (``RAGBUS_GATEWAY_ALLOWED_HOSTS``, 400/421), CORS
    (``RAGBUS_CORS_ORIGINS``), the ``Origin`` check of state-changing requests and
    WebSocket handshakes (403), bearer auth (when ``RAGBUS_API_TOKEN`` is set; health,
    readiness and the chat page stay public), body size limit
    (``RAGBUS_GATEWAY_MAX_BODY_BYTES``, 413). The routes then apply the rate limit and
    the caps on open asks, streams and WebSockets (429). See docs/security.md.

    Parameters:
        settings: bus, limits, auth, CORS and session settings.
        client: the client to ask and publish with (default: one built from settings).
        pipeline: the pipeline of the client it builds (default: the one
            ``settings.app`` names); a given client brings its own. ``POST /v1/events``
            accepts its entry events (and ``RAGBUS_GATEWAY_EVENT_TYPES``).
    """
    owns_client = client is None
    if client is None:
        client = Client(settings, app=pipeline, follow_tokens=True)
    gateway_metrics = GatewayMetrics()
    state = GatewayState(
        settings=settings,
        client=client,
        sessions=SessionStore(
            max_sessions=settings.gateway_sessions, max_turns=settings.gateway_history_turns
        ),
        metrics=gateway_metrics,
        admission=Admission(settings),
        intake=EventIntake(
            client.app,
            extra_types=settings.gateway_event_types,
            max_deadline_s=settings.gateway_max_timeout_s,
        ),
        owns_client=owns_client,
    )
    routes = gateway_routes()
    middleware = [
        Middleware(
            RequestMetricsMiddleware,
            metrics=gateway_metrics,
            routes=[route.path for route in routes if isinstance(route, Route | WebSocketRoute)],
        ),
        Middleware(SecurityHeadersMiddleware),
        Middleware(HostGuardMiddleware, allowed_hosts=settings.gateway_allowed_hosts),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type"],
                max_age=600,
            )
        )
    middleware.append(Middleware(OriginGuardMiddleware, allowed_origins=settings.cors_origins))
    if settings.api_token is not None:
        middleware.append(
            Middleware(BearerAuthMiddleware, token=settings.api_token.get_secret_value())
        )
    middleware.append(
        Middleware(BodySizeLimitMiddleware, max_bytes=settings.gateway_max_body_bytes)
    )
    middleware[:0] = tracing_middleware()
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            RequestError: on_request_error,
            HTTPException: on_http_exception,
            Exception: on_unexpected_error,
        },
        lifespan=_lifespan,
    )
    app.state.gateway = state
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    state = gateway_state(app)
    if state.owns_client:
        await state.client.open()
    try:
        yield
    finally:
        if state.owns_client:
            await state.client.close()
