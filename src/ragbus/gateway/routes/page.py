"""``GET /``: the chat page, plain HTML and a small script, shipped as package data."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

#: The page's inline ``<script>`` and ``<style>`` blocks, whose hashes the policy allows.
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


@cache
def page_html() -> str:
    """The chat page (``ragbus/gateway/static/index.html``), read once."""
    return files("ragbus.gateway").joinpath("static/index.html").read_text(encoding="utf-8")


@cache
def page_policy() -> str:
    """The page's Content-Security-Policy: its own inline script and style (by hash) and
    nothing else; requests only to the gateway itself; no framing, no form posts
    elsewhere, no ``<base>``."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, body in _INLINE.findall(page_html()):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[tag].append(f"'sha256-{digest}'")
    allowed = {tag: " ".join(found) or "'none'" for tag, found in hashes.items()}
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {allowed['script']}",
            f"style-src {allowed['style']}",
            "connect-src 'self'",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


async def index(request: Request) -> Response:
    """The chat page: ask a question, watch the stages and the answer's tokens arrive,
    see the sources. Served with a policy that runs only its own script."""
    return HTMLResponse(
        page_html(),
        headers={"cache-control": "no-cache", "content-security-policy": page_policy()},
    )
