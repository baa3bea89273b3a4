"""``POST /v1/events``: publish an event from another service over HTTP."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ragbus.bus.errors import BusError, UnroutableError
from ragbus.errors import QueueFullError
from ragbus.gateway.errors import RequestError, bus_unavailable, queue_full
from ragbus.gateway.models import Accepted
from ragbus.gateway.requests import json_body
from ragbus.gateway.state import gateway_state


async def publish_event(request: Request) -> Response:
    """Validate and publish one event; 202 with its id once the bus has it.

    The body is a minimal or full envelope of an accepted type (by default the
    pipeline's entry events: ``query_received``), or a bare entry payload such as
    ``{"question": ...}``. The gateway sets ``id``, ``correlation_id``, ``attempt``,
    ``replays`` and ``created_at`` itself and clamps ``deadline`` (see
    :mod:`ragbus.gateway.intake`); the response names the id it gave. 403 for a type
    this gateway does not accept; 415 unless the body is declared JSON; 422 names what
    is invalid (or that no stage consumes the type); 429 beyond the client's rate limit,
    or when the stage queues are full (``queue_full``, with ``Retry-After``); 503 when the
    bus did not take it.
    """
    state = gateway_state(request)
    await state.check_rate(request)
    envelope = state.intake.admit(await json_body(request))
    client = state.require_open()
    try:
        await client.publish(envelope)
    except UnroutableError as exc:
        raise RequestError(422, "unroutable", str(exc)) from None
    except QueueFullError as exc:
        raise queue_full(exc) from None
    except BusError as exc:
        raise bus_unavailable("the bus did not take the event", exc) from None
    accepted = Accepted(id=envelope.id, type=envelope.type, correlation_id=envelope.correlation)
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202)
