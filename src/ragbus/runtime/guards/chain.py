"""The middleware chain around a handler.

A middleware wraps the rest of the chain: it gets the event and ``call_next`` and
returns the output events. It may answer without calling on (cache hit), call on
several times (retry) or raise (deadline passed, breaker open).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Protocol

from ragbus.events import Envelope
from ragbus.runtime.stage import Handler, Stage


class Middleware(Protocol):
    """One guard around a stage's handler."""

    async def __call__(
        self, stage: Stage, envelope: Envelope, call_next: Handler
    ) -> list[Envelope]: ...


def build_chain(stage: Stage, middlewares: Sequence[Middleware]) -> Handler:
    """``stage.handler`` wrapped by ``middlewares``, the first one outermost."""
    chain: Handler = stage.handler
    for middleware in reversed(middlewares):
        chain = partial(middleware, stage, call_next=chain)
    return chain
