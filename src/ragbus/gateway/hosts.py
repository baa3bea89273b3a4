"""The ``Host`` header allow-list: the defence against DNS rebinding.

A page on ``attacker.example`` can make its own name resolve to 127.0.0.1 and then
read a gateway on the user's machine as if it were same-origin; its requests still name
``attacker.example`` in ``Host``. Refusing hosts that are not listed closes that door.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ragbus.gateway.errors import error_response, refuse

#: Paths served whatever the ``Host``: probes (Kubernetes sends the pod's IP) that read
#: nothing of value.
PROBE_PATHS = frozenset({"/healthz", "/readyz"})


def host_name(host_header: str) -> str | None:
    """The host name of a ``Host`` header value, lower-case, without port or IPv6
    brackets; None when the value is not a host (empty, a path, a user-info part).

    Parameters:
        host_header: e.g. ``localhost:8000``, ``[::1]:8000`` or ``Example.COM``.
    """
    value = host_header.strip().lower()
    if not value or any(char in value for char in "/@?#\\ \t"):
        return None
    if value.startswith("["):  # an IPv6 literal: [::1]:8000
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    elif value.count(":") > 1:  # an IPv6 address must be bracketed in Host
        return None
    else:
        name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


def host_allowed(name: str, allowed: Iterable[str]) -> bool:
    """Whether host ``name`` is allowed by a pattern of ``allowed``: an exact name, a
    ``.example.com`` suffix (the domain and its subdomains), or ``*`` (any).

    Parameters:
        name: a host name as :func:`host_name` returns it.
        allowed: the patterns (``RAGBUS_GATEWAY_ALLOWED_HOSTS``).
    """
    for pattern in allowed:
        pattern = pattern.strip().lower().strip("[]")
        if pattern == "*" or pattern == name:
            return True
        if pattern.startswith(".") and (name == pattern[1:] or name.endswith(pattern)):
            return True
    return False


class HostGuardMiddleware:
    """Refuses requests and WebSocket handshakes whose ``Host`` is not allowed.

    A missing or malformed ``Host`` gets 400 (``bad_host``); a host that is not on the
    list gets 421 Misdirected Request (``host_not_allowed``), both with a JSON body; a
    WebSocket handshake is refused the same way (see :func:`~ragbus.gateway.errors.refuse`).
    Probe paths (:data:`PROBE_PATHS`) are served whatever the host.

    Parameters:
        app: the app to wrap.
        allowed_hosts: the patterns of :func:`host_allowed` (``RAGBUS_GATEWAY_ALLOWED_HOSTS``;
            default there: ``localhost``, ``127.0.0.1``, ``::1``).
        exempt_paths: paths served whatever the host (default :data:`PROBE_PATHS`).
    """

    def __init__(
        self,
        app: ASGIApp,
        allowed_hosts: Iterable[str],
        exempt_paths: Iterable[str] = PROBE_PATHS,
    ) -> None:
        self.app = app
        self.allowed_hosts = tuple(allowed_hosts)
        self.exempt_paths = frozenset(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("host")
        name = host_name(header) if header is not None else None
        if name is None:
            response = error_response(
                400, "bad_host", "the request needs a valid Host header (a host name and port)"
            )
        elif not host_allowed(name, self.allowed_hosts):
            response = error_response(
                421,
                "host_not_allowed",
                f"this gateway does not serve the host {name!r}: add it to "
                "RAGBUS_GATEWAY_ALLOWED_HOSTS",
            )
        else:
            await self.app(scope, receive, send)
            return
        await refuse(scope, receive, send, response)
