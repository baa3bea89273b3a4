"""``POST /v1/ask``: ask a question and wait for its answer."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ragbus.bus.errors import BusError
from ragbus.client import AnswerTimeout
from ragbus.gateway.errors import RequestError
from ragbus.gateway.models import AnswerBody, AskRequest
from ragbus.gateway.requests import ClientGone, parse_body, until_disconnected
from ragbus.gateway.state import gateway_state


async def ask(request: Request) -> Response:
    """Ask a question and wait for its answer.

    The body is an :class:`~ragbus.gateway.models.AskRequest`; the answer is an
    :class:`~ragbus.gateway.models.AnswerBody`. 422 names each invalid field; 504 when no
    answer came within the timeout; 503 when the bus refused the question. A client that
    disconnects stops the wait.
    """
    state = gateway_state(request)
    body = await parse_body(request, AskRequest)
    timeout = state.timeout(body.timeout)
    client = state.require_open()
    started = time.perf_counter()
    try:
        answer = await until_disconnected(
            request,
            client.ask(body.question, k=body.k, history=body.history, timeout=timeout),
        )
    except AnswerTimeout as exc:
        raise RequestError(504, "timeout", str(exc)) from None
    except BusError as exc:
        raise RequestError(503, "unavailable", f"the bus refused the question: {exc}") from None
    except ClientGone:
        return Response(status_code=499)
    state.metrics.answer.labels("/v1/ask").observe(time.perf_counter() - started)
    return JSONResponse(AnswerBody.from_event(answer.answer).model_dump(mode="json"))
