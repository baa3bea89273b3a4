"""Interim events: what a handler may publish while it works, before its outputs.

A handler returns its outputs; the runtime publishes them (confirmed) and only then
acknowledges the input. Some progress is worth sending *while* the handler works, such as
an answer's tokens as the LM writes them. A handler that can do so takes an optional
``emit`` callback (:data:`Emit`) when it is built: the pipeline's wiring passes
:func:`ragbus.bus.base.emitter` (the bus's ``publish(..., transient=True)``), or nothing,
and the handler does not stream. The handler still imports no bus code: it only calls a
function.

An emitted event is *transient*: published at most once, not persisted, dropped when
nobody listens, never retried or dead-lettered, and ``emit`` never raises (except on
cancellation). So streaming can never fail or slow down a stage beyond the publish itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from ragbus.events import MAX_ANSWER_CHARS, AnswerToken, Envelope, EventType

logger = logging.getLogger(__name__)

#: Publishes one transient event, best effort; never raises except on cancellation.
Emit: TypeAlias = Callable[[Envelope], Awaitable[None]]


class TokenEmitter:
    """Turns the text deltas of one answer into ``answer_token`` events and emits them.

    The deltas are normalised like the final answer (``answer.strip()``): leading
    whitespace of the answer is dropped and trailing whitespace is held back until more
    text follows, so in the normal case the tokens' texts concatenate to the answer of
    the ``answer_generated`` event. Empty deltas are skipped, a delta longer than a
    token may be is split. Token ids are derived deterministically:
    ``uuid5(input id, f"answer_token:{sequence}")``. Should ``emit`` break its promise
    and raise, the error is logged and the rest of the answer is not streamed: tokens
    never fail the stage.

    Parameters:
        source: the input event (``documents_retrieved``) the answer is produced from.
        emit: the callback that publishes each token.
    """

    def __init__(self, source: Envelope, emit: Emit) -> None:
        self.source = source
        self.emit = emit
        self.sequence = 0
        self.text = ""
        self.broken = False
        self._held = ""

    async def add(self, delta: str) -> None:
        """Emit the part of ``delta`` that is certain to be in the final answer.

        Parameters:
            delta: the next piece of the answer as the LM streamed it.
        """
        pending = self._held + delta
        if not self.text:
            pending = pending.lstrip()
        body = pending.rstrip()
        self._held = pending[len(body) :]
        for start in range(0, len(body), MAX_ANSWER_CHARS):
            await self._send(body[start : start + MAX_ANSWER_CHARS])

    async def _send(self, text: str) -> None:
        if self.broken:
            return
        token = AnswerToken(sequence=self.sequence, text=text)
        self.sequence += 1
        self.text += text
        try:
            await self.emit(self.source.derive(EventType.ANSWER_TOKEN, token, part=token.sequence))
        except Exception:
            logger.exception("emitting an answer token failed; the answer is not streamed further")
            self.broken = True
