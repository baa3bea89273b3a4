"""``GET /asyncapi.json``: the AsyncAPI 3.0 document of the gateway's pipeline."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ragbus.asyncapi import asyncapi_document
from ragbus.gateway.state import gateway_state


async def asyncapi(request: Request) -> Response:
    """The document ``ragbus asyncapi`` prints for the same app and settings."""
    state = gateway_state(request)
    settings = state.settings
    document = asyncapi_document(
        state.client.app,
        exchange=settings.exchange,
        queue_prefix=settings.queue_prefix,
        amqp_url=settings.amqp_url.get_secret_value(),
    )
    return JSONResponse(document)
