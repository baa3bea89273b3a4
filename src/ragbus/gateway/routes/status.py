"""``GET /v1/status``: the pipeline's status, the JSON ``ragbus status --json`` prints.

The first request subscribes the gateway to the workers' heartbeats and listens for
one heartbeat interval; later requests answer at once from what arrived since. On the
memory bus the stages run in this process and send their heartbeats on its bus.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ragbus.bus.errors import BusError
from ragbus.gateway.errors import RequestError
from ragbus.gateway.state import gateway_state
from ragbus.status.board import HeartbeatBoard
from ragbus.status.collect import collect_status

#: Heartbeat intervals the first request listens before answering.
FIRST_LISTEN_INTERVALS = 1.25


async def pipeline_status(request: Request) -> Response:
    """The status of the gateway's pipeline (503 when the bus cannot be asked)."""
    state = gateway_state(request)
    client = state.require_open()
    board = getattr(request.app.state, "status_board", None)
    if board is None:
        board = HeartbeatBoard(client.app.name)
        request.app.state.status_board = board
        board.subscribe(client.bus)
        await asyncio.sleep(FIRST_LISTEN_INTERVALS * (state.settings.heartbeat_interval_s or 2.0))
    try:
        status = await collect_status(client.bus, client.app, board)
    except (BusError, OSError) as exc:
        raise RequestError(503, "unavailable", f"cannot read the bus's state: {exc}") from exc
    return JSONResponse(status.model_dump(mode="json"))
