"""Where the gateway may listen: not beyond this machine without a token, unless told.

With no ``RAGBUS_API_TOKEN`` the gateway answers anyone who reaches it, from a private
corpus too. On a loopback address only this machine's users and programs reach it (and
the ``Host`` and ``Origin`` checks keep other sites' pages out); on any other address,
the network does.
"""

from __future__ import annotations

import ipaddress

from ragbus.config import Settings
from ragbus.errors import ConfigurationError

#: Host names that are the loopback interface.
LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` exposes the gateway to this machine only: a loopback IP
    address (``127.0.0.1``, ``::1``, ...) or ``localhost``. Any other name counts as
    exposed (it may resolve to anything), as do ``0.0.0.0`` and ``::`` (every interface).

    Parameters:
        host: the address or name to bind.
    """
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings, host: str) -> None:
    """Raise :class:`~ragbus.errors.ConfigurationError` when binding ``host`` would serve
    the network without a token and ``RAGBUS_GATEWAY_ALLOW_UNAUTHENTICATED`` is not set.

    Parameters:
        settings: the token and the explicit permission.
        host: the address to bind.
    """
    if is_loopback(host) or settings.api_token is not None:
        return
    if settings.gateway_allow_unauthenticated:
        return
    raise ConfigurationError(
        f"refusing to serve {host} without a token: anyone who reaches it could ask and "
        "read answers; set RAGBUS_API_TOKEN, bind 127.0.0.1, or pass "
        "--allow-unauthenticated (RAGBUS_GATEWAY_ALLOW_UNAUTHENTICATED=true) if a proxy "
        "in front authenticates"
    )
