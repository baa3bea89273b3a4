"""Reading requests: JSON bodies validated by a model, and work that stops when the client
leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from ragbus.gateway.errors import RequestError, describe
from ragbus.json_input import MalformedJSON, json_type_name, parse_json

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its response was ready."""


#: The one media type the gateway's bodies are read as.
JSON_MEDIA_TYPE = "application/json"


def require_json_media_type(request: Request) -> None:
    """Raise :class:`RequestError` (415) unless the request declares a JSON body
    (``Content-Type: application/json``, parameters such as ``charset`` allowed).

    A browser sends a cross-site ``text/plain`` or form POST without asking first
    (no CORS preflight); accepting only JSON closes that door as well as the check of
    ``Origin``."""
    declared = request.headers.get("content-type", "")
    media_type = declared.partition(";")[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        got = f" (got {declared.strip()[:100]!r})" if declared.strip() else ""
        raise RequestError(
            415,
            "unsupported_media_type",
            f"send the body as JSON with the header `Content-Type: {JSON_MEDIA_TYPE}`{got}",
        )


async def json_body(request: Request) -> Any:
    """The request's body parsed as JSON; raises :class:`RequestError`: 415 when it is
    not declared as JSON (see :func:`require_json_media_type`), 422 when it is not JSON."""
    require_json_media_type(request)
    try:
        raw = await request.body()
    except ClientDisconnect as exc:
        raise ClientGone("the client disconnected while sending its request") from exc
    if not raw.strip():
        raise RequestError(422, "invalid_request", "the body is empty: expected a JSON object")
    try:
        return parse_json(raw)
    except MalformedJSON as exc:
        raise RequestError(422, "invalid_request", f"malformed JSON: {exc}") from None


async def parse_body(request: Request, model: type[M]) -> M:
    """The request's JSON body validated by ``model``; raises :class:`RequestError` (422)
    naming each invalid field.

    Parameters:
        request: the request.
        model: the pydantic model of the body.
    """
    data = await json_body(request)
    if not isinstance(data, dict):
        raise RequestError(
            422, "invalid_request", f"expected a JSON object, got {json_type_name(data)}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestError(422, "invalid_request", describe(exc)) from None


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` unless the client disconnects first: then ``work`` is cancelled and
    :class:`ClientGone` raised. Call it once the body has been read.

    Parameters:
        request: the request whose connection to watch.
        work: what computes the response.
    """
    task = asyncio.ensure_future(work)
    watch = asyncio.create_task(_disconnected(request), name="ragbus:watch-client")
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, watch, return_exceptions=True)
    if task.cancelled():
        raise ClientGone("the client disconnected before the answer")
    return task.result()


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
