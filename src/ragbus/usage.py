"""Tokens an LM call used, passed from the handler that made it to the guards around it.

The rate limit guard opens a count (:func:`counting_tokens`) around each call to the LM;
a handler that learns its LM's usage reports it (:func:`report_tokens`, done by
:func:`ragbus.lm.reported_usage`). Handlers import this module, never the runtime.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_TOKENS: ContextVar[list[int] | None] = ContextVar("ragbus_lm_tokens", default=None)


@contextmanager
def counting_tokens() -> Iterator[list[int]]:
    """Collect the tokens reported while the block runs (in this task)."""
    sink: list[int] = []
    token = _TOKENS.set(sink)
    try:
        yield sink
    finally:
        _TOKENS.reset(token)


def report_tokens(count: int) -> None:
    """Report ``count`` tokens used by an LM call to whoever counts them (if anyone)."""
    sink = _TOKENS.get()
    if sink is not None and count > 0:
        sink.append(count)
