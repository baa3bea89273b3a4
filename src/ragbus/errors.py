"""Exceptions a handler raises to say how its failure should be treated.

Handlers only raise; the runtime classifies (``ragbus.runtime.classify``) and decides
what happens: retry, dead-letter, or pause the stage.
"""

from __future__ import annotations


class RagbusError(Exception):
    """Base of ragbus's own exceptions."""


class PermanentError(RagbusError):
    """The event can never succeed as it is (bad input, a missing document, ...).

    It goes to the dead-letter queue at once with reason ``failed``; it is never retried.
    """


class TransientError(RagbusError):
    """A failure that may pass (a timeout, a 429, a reset connection).

    Parameters:
        message: what went wrong.
        retry_after: seconds the dependency asked us to wait before trying again
            (default: none, the retry policy's own backoff applies).
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidEvent(ValueError):
    """A message that is not a valid event: malformed JSON, unknown type, schema violation,
    or too large. Always permanent: it goes to the dead-letter queue, never retried.
    (Also importable from :mod:`ragbus.events`.)"""


class ConfigurationError(RagbusError):
    """A setting or an input path is wrong; raised at start-up, shown as one line."""


class QueueFullError(TransientError):
    """A queue refused an event because it is full, and stayed full for as long as the
    publisher could wait (its ``RAGBUS_QUEUE_FULL_WAIT_S``, or less when the event's
    deadline came first).

    This is backpressure, not a fault: the stages are behind. Nothing was lost: the event
    was not taken (or, for an event several stages consume, taken by some and not all;
    publishing it again is safe since consumers drop duplicates by event id). Try again
    after ``retry_after`` seconds, or tell your own caller to (the gateway answers 429
    with ``Retry-After``).

    Parameters:
        message: which queue and how long the publisher waited.
        retry_after: seconds worth waiting before trying again (default 1).
    """

    def __init__(self, message: str, *, retry_after: float | None = 1.0) -> None:
        super().__init__(message, retry_after=retry_after)


class AnswerTimeout(TimeoutError):
    """No result (answer) arrived within the time asked for (raised by
    :class:`ragbus.client.Client`, which re-exports it)."""
