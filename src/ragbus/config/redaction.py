"""Secrets never reach a log line, an error line or a traceback, whoever writes them.

ragbus's own messages name URLs through :func:`ragbus.config.urls.mask_url`, and the
clients it uses censor passwords in their own log lines, but not always: aio-pika
logs a URL it cannot parse as it was given, redis-py puts the rest of a URL it cannot
parse into its error. So every process a ``ragbus`` command starts filters what it
prints, as a second line of defence:

- every password in a ``scheme://user:password@`` form is replaced by ``***``;
- every configured secret (connection URLs and their passwords, the LM API key, the
  gateway token) is replaced wherever it appears, when it is long enough to be
  recognised (:data:`MIN_SECRET_CHARS`; a shorter one would mask ordinary words).

:func:`protect` installs this on the log handlers and on uncaught exceptions; the CLI's
one-line errors pass through :func:`redact` too.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlsplit

from ragbus.config.urls import MASK

if TYPE_CHECKING:
    from ragbus.config.settings import Settings

#: Secrets shorter than this are only masked inside URLs.
MIN_SECRET_CHARS: Final = 6

# scheme, one or more slashes, a user (maybe empty), ':' and a password up to the '@'.
_URL_PASSWORD: Final = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*:/+[^\s/@:]*:)[^\s/@]+(?=@)")

_lock = threading.Lock()
_secrets: set[str] = set()


def redact(text: str) -> str:
    """``text`` with URL passwords and every remembered secret replaced by ``***``.

    Parameters:
        text: a message about to be shown.
    """
    text = _URL_PASSWORD.sub(lambda match: match["head"] + MASK, text)
    for secret in sorted(_secrets, key=len, reverse=True):  # a URL before its password
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def remember(secrets: Iterable[str | None]) -> None:
    """Add ``secrets`` to what :func:`redact` masks (those long enough to recognise).

    Parameters:
        secrets: secret values; None and short ones are skipped.
    """
    with _lock:
        _secrets.update(s for s in secrets if s and len(s) >= MIN_SECRET_CHARS)


def secrets_of(settings: Settings) -> list[str]:
    """The secret values in ``settings``: connection URLs that hold a password, their
    passwords (also percent-decoded), the LM and embedding API keys and the gateway token.

    Parameters:
        settings: the settings of this process.
    """
    found: list[str] = []
    for secret in (settings.amqp_url, settings.cache_url):
        if secret is None:
            continue
        for url in secret.get_secret_value().split(","):
            try:
                password = urlsplit(url.strip()).password
            except ValueError:
                continue
            if password:  # a URL without one is no secret: keep it readable in logs
                found += [url.strip(), password, unquote(password)]
    for token in (settings.lm_api_key, settings.embed_api_key, settings.api_token):
        if token is not None:
            found.append(token.get_secret_value())
    return found


class RedactingFilter(logging.Filter):
    """A log filter that redacts each record's message, exception and stack text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _redacting_excepthook(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    import traceback

    sys.stderr.write(redact("".join(traceback.format_exception(kind, error, trace))))


_FILTER: Final = RedactingFilter()


def protect(settings: Settings | None) -> None:
    """Redact ``settings``' secrets (and any URL password) from everything this process
    logs through the root logger's handlers (and the last-resort handler used when
    there are none) and from uncaught tracebacks. Call it again after adding handlers.

    Parameters:
        settings: the settings whose secrets to hide (None: URL passwords only, until
            the settings are known).
    """
    if settings is not None:
        remember(secrets_of(settings))
    handlers = [*logging.getLogger().handlers, logging.lastResort]
    for handler in handlers:
        if handler is not None and _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    sys.excepthook = _redacting_excepthook
