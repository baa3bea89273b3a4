"""The one place that decides what kind of failure an exception is."""

from __future__ import annotations

import asyncio
from enum import StrEnum

from ragbus.errors import PermanentError, TransientError
from ragbus.events import InvalidEvent


class FailureClass(StrEnum):
    """How a failed event is treated."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    BREAKER_OPEN = "breaker_open"


class BreakerOpenError(Exception):
    """A call was refused because its dependency's circuit breaker is open."""


#: HTTP statuses worth retrying.
TRANSIENT_HTTP_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

_TRANSIENT_NAMES = frozenset(
    {
        "APIConnectionError",
        "APITimeoutError",
        "RateLimitError",
        "ServiceUnavailableError",
        "InternalServerError",
        "Timeout",
        "TimeoutError",
        "ReadTimeout",
        "ConnectTimeout",
        "ConnectError",
        "RemoteProtocolError",
        "BadGatewayError",
        # DSPy's LM errors (dspy.utils.exceptions) that may pass
        "LMRateLimitError",
        "LMTimeoutError",
        "LMServerError",
        "LMTransportError",
        "LMLockTimeoutError",
    }
)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (``status_code`` or ``status``), if any."""
    for attribute in ("status_code", "status"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int):
            return value
    return None


#: Exception class names that say "too many requests" (LiteLLM's and DSPy's).
_RATE_LIMITED_NAMES = frozenset({"RateLimitError", "LMRateLimitError"})


def causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes (``__cause__``, else ``__context__``), outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def is_rate_limited(exc: BaseException) -> bool:
    """Whether ``exc`` or one of its causes is a refusal for load: HTTP 429 or a
    rate-limit error. The dependency is up and answering; it wants fewer calls."""
    return any(
        http_status(current) == 429
        or any(cls.__name__ in _RATE_LIMITED_NAMES for cls in type(current).__mro__)
        for current in causes(exc)
    )


def classify(exc: BaseException) -> FailureClass:
    """The failure class of ``exc``: breaker-open, transient or permanent.

    Transient: ``TransientError``, timeouts, connection errors, HTTP 408/409/425/429/5xx
    (on the exception or its causes), and LM client errors of those kinds by name
    (DSPy's ``LMRateLimitError``, ``LMServerError``, ``LMTimeoutError``, ...; its auth,
    billing and invalid-request errors stay permanent).
    Everything else is permanent: retrying a bug or bad input only delays the DLQ.
    """
    if isinstance(exc, BreakerOpenError):
        return FailureClass.BREAKER_OPEN
    if isinstance(exc, PermanentError | InvalidEvent):
        return FailureClass.PERMANENT
    if any(_is_transient(current) for current in causes(exc)):
        return FailureClass.TRANSIENT
    return FailureClass.PERMANENT


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError | asyncio.TimeoutError | TimeoutError | ConnectionError):
        return True
    status = http_status(exc)
    if status is not None:
        return status in TRANSIENT_HTTP_STATUSES or status >= 500
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


def retry_after(exc: BaseException) -> float | None:
    """Seconds the failed dependency asked us to wait (``Retry-After``), if it said."""
    current: BaseException | None = exc
    while current is not None:
        asked = getattr(current, "retry_after", None)  # TransientError, DSPy's LM errors
        if isinstance(asked, int | float) and not isinstance(asked, bool):
            return max(0.0, float(asked))
        response = getattr(current, "response", None)
        headers = getattr(response, "headers", None)
        if headers is not None:
            value = headers.get("retry-after") or headers.get("Retry-After")
            if value is not None:
                try:
                    return max(0.0, float(value))
                except ValueError:
                    pass
        current = current.__cause__
    return None
