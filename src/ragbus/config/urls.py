"""Connection URLs are secrets: they carry passwords. This module shows them safely.

Settings keep URLs as ``SecretStr`` (masked in ``repr`` and in validation errors); every
message that names a URL passes it through :func:`mask_url` first.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

#: What a password is replaced with.
MASK = "***"


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``; several URLs separated by commas are
    masked one by one. Text that is not a URL comes back unchanged.

    Parameters:
        url: one URL, or several separated by commas (``amqp://u:p@a/,amqp://u:p@b/``).
    """
    return ",".join(_mask_one(part) for part in url.split(","))


def _mask_one(url: str) -> str:
    try:
        parts = urlsplit(url.strip())
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"{user}:{MASK}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
