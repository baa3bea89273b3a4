"""Who is calling: the key that rate limits, connection caps and chat sessions are
counted and bound by."""

from __future__ import annotations

import hashlib

from starlette.requests import HTTPConnection

from ragbus.config import Settings


def token_fingerprint(token: str) -> str:
    """A short, stable name for ``token`` that does not reveal it (rate-limit keys may
    be stored in Redis)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def client_key(connection: HTTPConnection, settings: Settings) -> str:
    """The client a request counts against.

    With ``RAGBUS_API_TOKEN`` set, every API request carries the token (the auth
    middleware saw to it), and the token is the client: ``token:<fingerprint>``, so
    every holder of one token shares its limits. Without a token, the client's address:
    ``address:<ip>`` (behind a reverse proxy, run uvicorn with ``--proxy-headers`` and
    ``--forwarded-allow-ips`` so that this is the caller's, not the proxy's).

    Parameters:
        connection: the request or WebSocket.
        settings: the gateway's settings (is a token set?).
    """
    if settings.api_token is not None:
        return f"token:{token_fingerprint(settings.api_token.get_secret_value())}"
    address = connection.client.host if connection.client is not None else "unknown"
    return f"address:{address}"
