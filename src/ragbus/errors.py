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


class ConfigurationError(RagbusError):
    """A setting or an input path is wrong; raised at start-up, shown as one line."""


class AnswerTimeout(TimeoutError):
    """No result (answer) arrived within the time asked for (raised by
    :class:`ragbus.client.Client`, which re-exports it)."""
