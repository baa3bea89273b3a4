"""Errors the gateway answers with: one JSON shape, ``{"error": code, "message": reason}``."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ragbus.errors import QueueFullError
from ragbus.gateway.models import ErrorBody

logger = logging.getLogger(__name__)

#: Error codes of the HTTP statuses Starlette raises itself (404, 405, ...).
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
    504: "timeout",
}


class RequestError(Exception):
    """A request the gateway refuses or cannot serve, answered as :class:`ErrorBody`.

    Parameters:
        status: the HTTP status.
        error: a short code (``invalid_request``, ``timeout``, ...).
        message: the reason, for a person.
        headers: extra response headers, e.g. ``Retry-After`` (default none).
        retry_after: seconds to wait, also in the body's ``retry_after`` (default none).
    """

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = dict(headers or {})
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        """This error as a JSON response."""
        return error_response(
            self.status,
            self.error,
            self.message,
            headers=self.headers,
            retry_after=self.retry_after,
        )


def error_response(
    status: int,
    error: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    retry_after: float | None = None,
) -> JSONResponse:
    """A JSON error response.

    Parameters:
        status: the HTTP status.
        error: a short code.
        message: the reason.
        headers: extra headers (default none).
        retry_after: the body's ``retry_after`` (default none: left out).
    """
    body = ErrorBody(error=error, message=message, retry_after=retry_after).model_dump(
        exclude_none=True
    )
    return JSONResponse(body, status_code=status, headers=headers)


def describe(exc: ValidationError) -> str:
    """One line naming each invalid field and why, e.g. ``question: String should have at
    least 1 character``."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def bus_unavailable(what: str, exc: BaseException) -> RequestError:
    """The 503 for a bus failure: ``what`` happened, without the exception's text (which
    may name hosts, queues or internals); the exception goes to the log instead.

    Parameters:
        what: what failed, for the caller (``the bus refused the question``).
        exc: the failure, logged.
    """
    logger.warning("%s: %r", what, exc)
    return RequestError(503, "unavailable", f"{what}; the gateway's log has the reason")


def queue_full(exc: QueueFullError) -> RequestError:
    """The 429 for work the bus refused because a stage queue is full (backpressure:
    the stages are behind); see :func:`queue_full_refusal`.

    Parameters:
        exc: the refusal.
    """
    return queue_full_refusal(exc.retry_after)


def queue_full_refusal(retry_after: float | None) -> RequestError:
    """The 429 ``queue_full``, with ``Retry-After`` in whole seconds (at least 1) and the
    same number in the body's ``retry_after``.

    Parameters:
        retry_after: seconds the bus said to wait (None: 1).
    """
    wait = max(1, math.ceil(retry_after or 1))
    return RequestError(
        429,
        "queue_full",
        f"the pipeline is at capacity (its queues are full); try again in {wait}s",
        headers={"Retry-After": str(wait)},
        retry_after=wait,
    )


async def on_request_error(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for :class:`RequestError`."""
    assert isinstance(exc, RequestError)
    return exc.response()


async def on_unexpected_error(request: Request, exc: Exception) -> Response:
    """Starlette's handler of last resort: a defect answers 500 with a JSON body that
    names no internals (the exception is logged, and uvicorn logs it again)."""
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "the gateway failed: its log has the reason")


async def on_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette exception handler: HTTP errors as JSON too."""
    assert isinstance(exc, HTTPException)
    code = _STATUS_CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def refuse(
    scope: Scope, receive: Receive, send: Send, response: Response, *, close_code: int = 1008
) -> None:
    """Answer a request, or refuse a WebSocket handshake, with ``response``.

    A WebSocket handshake is refused with the same HTTP response (status, headers and
    JSON body) where the server supports the ASGI WebSocket denial response (uvicorn
    does); elsewhere it is closed before it is accepted with ``close_code``, which the
    server answers with HTTP 403.

    Parameters:
        scope, receive, send: the ASGI connection.
        response: the refusal.
        close_code: the WebSocket close code without the denial extension (default 1008,
            policy violation; 1013 for "try again later").
    """
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get(
        "extensions", {}
    ):
        await send({"type": "websocket.close", "code": close_code, "reason": ""})
        return
    await response(scope, receive, send)
