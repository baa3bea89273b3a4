"""``POST /v1/events``: publish an event from another service over HTTP."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ragbus.bus.errors import BusError, UnroutableError
from ragbus.events import InvalidEvent
from ragbus.gateway.errors import RequestError
from ragbus.gateway.models import Accepted
from ragbus.gateway.requests import json_body
from ragbus.gateway.state import gateway_state
from ragbus.publishing import to_envelope


async def publish_event(request: Request) -> Response:
    """Validate and publish one event; 202 with its id once the bus has it.

    The body is an envelope (full or minimal: ``type`` + ``payload``) or a bare
    ``query_received`` payload such as ``{"question": ...}``, exactly as ``ragbus
    publish`` takes it. 422 names what is invalid (or that no stage consumes the type);
    503 when the bus did not take it.
    """
    state = gateway_state(request)
    data = await json_body(request)
    try:
        envelope = to_envelope(data, state.client.app)
    except InvalidEvent as exc:
        raise RequestError(422, "invalid_event", str(exc)) from None
    client = state.require_open()
    try:
        await client.publish(envelope)
    except UnroutableError as exc:
        raise RequestError(422, "unroutable", str(exc)) from None
    except BusError as exc:
        raise RequestError(503, "unavailable", f"the bus did not take the event: {exc}") from None
    accepted = Accepted(id=envelope.id, type=envelope.type, correlation_id=envelope.correlation)
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202)
