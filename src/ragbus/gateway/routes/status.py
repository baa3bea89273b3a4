"""``GET /v1/status``: the pipeline's status, the JSON ``ragbus status --json`` prints.

The first request subscribes the gateway to the workers' heartbeats; requests in the
first heartbeat interval (and a quarter) wait for it to end, later ones answer at once
from what arrived since. On the
memory bus the stages run in this process and send their heartbeats on its bus.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ragbus.gateway.errors import bus_unavailable
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
    # every request until the first interval is over waits for it, not only the first
    listen = FIRST_LISTEN_INTERVALS * (state.settings.heartbeat_interval_s or 2.0)
    left = board.started_at + listen - board.clock()
    if left > 0:
        await asyncio.sleep(left)
    try:
        status = await collect_status(client.bus, client.app, board)
    except Exception as exc:  # the broker's many kinds of failure: each one a 503
        raise bus_unavailable("cannot read the bus's state", exc) from None
    return JSONResponse(status.model_dump(mode="json"))
