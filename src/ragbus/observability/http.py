"""The gateway's HTTP server span, from OpenTelemetry's ASGI instrumentation."""

from __future__ import annotations

from typing import Final

from starlette.middleware import Middleware

from ragbus.observability import tracing

#: Paths polled by probes and scrapers: no span each time they are asked.
UNTRACED_PATHS: Final = "healthz,readyz,metrics"


def tracing_middleware() -> list[Middleware]:
    """The ASGI middleware that makes each request a server span (``POST /v1/ask``),
    continuing a ``traceparent`` header the caller sends, so the events a request
    publishes belong to its trace; none without tracing (see
    :func:`ragbus.observability.tracing.enabled`). Put it first: it must see the request
    before any other middleware answers it.
    """
    if not tracing.enabled():
        return []
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    # one span per request: no extra span for each ASGI receive/send (every SSE chunk)
    return [
        Middleware(
            OpenTelemetryMiddleware,
            excluded_urls=UNTRACED_PATHS,
            exclude_spans=["receive", "send"],
        )
    ]
