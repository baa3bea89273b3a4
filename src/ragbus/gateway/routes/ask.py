"""``POST /v1/ask``: ask a question and wait for its answer."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ragbus.bus.errors import BusError
from ragbus.client import AnswerTimeout
from ragbus.errors import QueueFullError
from ragbus.gateway.errors import RequestError, bus_unavailable, queue_full
from ragbus.gateway.models import AnswerBody, AskRequest
from ragbus.gateway.requests import ClientGone, parse_body, until_disconnected
from ragbus.gateway.state import gateway_state


async def ask(request: Request) -> Response:
    """Ask a question and wait for its answer.

    The body is an :class:`~ragbus.gateway.models.AskRequest`; the answer is an
    :class:`~ragbus.gateway.models.AnswerBody`. 415 unless the body is declared JSON;
    422 names each invalid field; 429 beyond the client's rate limit or the cap on open
    asks, or when the pipeline's queues are full (``queue_full``, with ``Retry-After``);
    504 when no answer came within the timeout; 503 when the bus refused the
    question (the reason goes to the log, not to the caller). A client that disconnects
    stops the wait.
    """
    state = gateway_state(request)
    client_id = await state.check_rate(request)
    body = await parse_body(request, AskRequest)
    timeout = state.timeout(body.timeout)
    client = state.require_open()
    started = time.perf_counter()
    with state.admission.asks.take(client_id):
        try:
            answer = await until_disconnected(
                request,
                client.ask(body.question, k=body.k, history=body.history, timeout=timeout),
            )
        except AnswerTimeout as exc:
            raise RequestError(504, "timeout", str(exc)) from None
        except QueueFullError as exc:
            raise queue_full(exc) from None
        except BusError as exc:
            raise bus_unavailable("the bus refused the question", exc) from None
        except ClientGone:
            return Response(status_code=499)
    state.metrics.answer.labels("/v1/ask").observe(time.perf_counter() - started)
    return JSONResponse(AnswerBody.from_event(answer.answer).model_dump(mode="json"))
