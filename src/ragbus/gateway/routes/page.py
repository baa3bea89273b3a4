"""``GET /``: the chat page, plain HTML and a small script, shipped as package data."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response


@cache
def page_html() -> str:
    """The chat page (``ragbus/gateway/static/index.html``), read once."""
    return files("ragbus.gateway").joinpath("static/index.html").read_text(encoding="utf-8")


async def index(request: Request) -> Response:
    """The chat page: ask a question, watch the stages and the answer's tokens arrive,
    see the sources."""
    return HTMLResponse(page_html(), headers={"cache-control": "no-cache"})
