"""Errors the gateway answers with: one JSON shape, ``{"error": code, "message": reason}``."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ragbus.gateway.models import ErrorBody

#: Error codes of the HTTP statuses Starlette raises itself (404, 405, ...).
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    422: "invalid_request",
    503: "unavailable",
    504: "timeout",
}


class RequestError(Exception):
    """A request the gateway refuses or cannot serve, answered as :class:`ErrorBody`.

    Parameters:
        status: the HTTP status.
        error: a short code (``invalid_request``, ``timeout``, ...).
        message: the reason, for a person.
    """

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def error_response(
    status: int, error: str, message: str, *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A JSON error response.

    Parameters:
        status: the HTTP status.
        error: a short code.
        message: the reason.
        headers: extra headers (default none).
    """
    body = ErrorBody(error=error, message=message).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


def describe(exc: ValidationError) -> str:
    """One line naming each invalid field and why, e.g. ``question: String should have at
    least 1 character``."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


async def on_request_error(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for :class:`RequestError`."""
    assert isinstance(exc, RequestError)
    return error_response(exc.status, exc.error, exc.message)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette exception handler: HTTP errors as JSON too."""
    assert isinstance(exc, HTTPException)
    code = _STATUS_CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)
