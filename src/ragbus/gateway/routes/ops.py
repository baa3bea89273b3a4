"""``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ragbus.gateway.models import Health
from ragbus.gateway.state import gateway_state


async def healthz(request: Request) -> Response:
    """Liveness: 200 while the process serves requests."""
    state = gateway_state(request)
    return JSONResponse(Health(ok=True, bus=state.settings.bus.value).model_dump())


async def readyz(request: Request) -> Response:
    """Readiness: 200 when the client is open and the bus connected (with live
    consumers), else 503."""
    state = gateway_state(request)
    client = state.client
    if not client.is_open:
        ready, detail = False, "not connected to the bus"
    elif not client.bus.healthy:
        ready, detail = False, "the bus connection or a consumer is down"
    else:
        ready, detail = True, ""
    body = Health(ok=ready, bus=state.settings.bus.value, detail=detail)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    """The gateway's metrics in Prometheus's text format (summed over the processes of
    ``ragbus serve --workers``), followed by those of the stages it runs in process
    (memory bus)."""
    state = gateway_state(request)
    # one of `ragbus serve --workers` processes: the sum over all of them
    text = (state.pool_metrics or state.metrics).render()
    runtime = state.client.runtime
    if runtime is not None:
        text += runtime.metrics.render()
    return Response(text, media_type=CONTENT_TYPE_LATEST)
