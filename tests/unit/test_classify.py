"""Failure classification: one place decides."""

from __future__ import annotations

from typing import ClassVar

import pytest

from ragbus.errors import PermanentError, TransientError
from ragbus.events import InvalidEvent
from ragbus.runtime.classify import BreakerOpenError, FailureClass, classify, retry_after


class HTTPError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class RateLimitError(Exception):
    """Named like LiteLLM's."""


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (PermanentError("bad"), FailureClass.PERMANENT),
        (InvalidEvent("bad"), FailureClass.PERMANENT),
        (ValueError("bug"), FailureClass.PERMANENT),
        (TransientError("flaky"), FailureClass.TRANSIENT),
        (TimeoutError(), FailureClass.TRANSIENT),
        (ConnectionResetError(), FailureClass.TRANSIENT),
        (HTTPError(429), FailureClass.TRANSIENT),
        (HTTPError(503), FailureClass.TRANSIENT),
        (HTTPError(400), FailureClass.PERMANENT),
        (RateLimitError("slow down"), FailureClass.TRANSIENT),
        (BreakerOpenError("lm"), FailureClass.BREAKER_OPEN),
    ],
)
def test_classes(exc: Exception, expected: FailureClass) -> None:
    assert classify(exc) is expected


def test_a_transient_cause_makes_the_failure_transient() -> None:
    try:
        try:
            raise ConnectionResetError("reset")
        except ConnectionResetError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert classify(outer) is FailureClass.TRANSIENT


def test_retry_after_from_error_or_response_headers() -> None:
    assert retry_after(TransientError("x", retry_after=2.5)) == 2.5

    class Response:
        headers: ClassVar[dict[str, str]] = {"retry-after": "3"}

    error = HTTPError(429)
    error.response = Response()  # type: ignore[attr-defined]
    assert retry_after(error) == 3.0
    assert retry_after(ValueError()) is None
