"""Interim events: what a handler may publish while it works, before its outputs.

A handler returns its outputs; the runtime publishes them (confirmed) and only then
acknowledges the input. Some progress is worth sending *while* the handler works, such as
an answer's tokens as the LM writes them. A handler that can do so takes an optional
``emit`` callback (:data:`Emit`) when it is built: the host passes one that publishes
transient events on its bus, or nothing, and the handler does not stream. The handler
still imports no bus code: it only calls a function.

An emitted event is *transient*: published at most once, not persisted, dropped when
nobody listens, never retried or dead-lettered, and ``emit`` never raises (except on
cancellation). So streaming can never fail or slow down a stage beyond the publish itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from ragbus.events import Envelope

logger = logging.getLogger(__name__)

#: Longest text of one token event; a longer delta is split.
MAX_TOKEN_CHARS: Final = 20_000


class StreamToken(BaseModel):
    """A piece of an output while a stage writes it: the payload of a *transient* event
    (``answer_token`` for the RAG pipeline).

    Transient events are interim progress for clients that stream (the gateway): they are
    not persisted, not confirmed as routed, dropped when nobody listens, and never
    retried or dead-lettered. The stage's output event stays the authoritative result; in
    the normal case the ``text`` of an output's tokens, in ``sequence`` order,
    concatenates to the streamed field. A cached or coalesced output comes without
    tokens, and a retried call may send a sequence again: consumers drop a ``sequence``
    they already have.

    Parameters:
        sequence: position of this piece in the output, from 0.
        text: the piece (a delta, often a few words), at most 20,000 characters.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sequence: int = Field(ge=0)
    text: str = Field(max_length=MAX_TOKEN_CHARS)


#: Publishes one transient event, best effort; never raises except on cancellation.
Emit: TypeAlias = Callable[[Envelope], Awaitable[None]]


class TokenEmitter:
    """Turns the text deltas of one output field into token events and emits them.

    The deltas are normalised like the final value (``value.strip()``): leading
    whitespace is dropped and trailing whitespace is held back until more text follows,
    so in the normal case the tokens' texts concatenate to the field's final value.
    Empty deltas are skipped, a delta longer than a token may be is split. Token ids are
    derived deterministically: ``uuid5(input id, f"{token_type}:{sequence}")``. Should
    ``emit`` break its promise and raise, the error is logged and the rest is not
    streamed: tokens never fail the stage.

    Parameters:
        source: the input event the output is produced from.
        emit: the callback that publishes each token.
        token_type: the event type of the tokens, registered as transient with
            :class:`StreamToken` payloads (e.g. ``answer_token``).
    """

    def __init__(self, source: Envelope, emit: Emit, token_type: str) -> None:
        self.source = source
        self.emit = emit
        self.token_type = token_type
        self.sequence = 0
        self.text = ""
        self.broken = False
        self._held = ""

    async def add(self, delta: str) -> None:
        """Emit the part of ``delta`` that is certain to be in the final value.

        Parameters:
            delta: the next piece of the value as the LM streamed it.
        """
        pending = self._held + delta
        if not self.text:
            pending = pending.lstrip()
        body = pending.rstrip()
        self._held = pending[len(body) :]
        for start in range(0, len(body), MAX_TOKEN_CHARS):
            await self._send(body[start : start + MAX_TOKEN_CHARS])

    async def _send(self, text: str) -> None:
        if self.broken:
            return
        token = StreamToken(sequence=self.sequence, text=text)
        self.sequence += 1
        self.text += text
        try:
            await self.emit(self.source.derive(self.token_type, token, part=token.sequence))
        except Exception:
            logger.exception(
                "emitting a %s event failed; the rest is not streamed", self.token_type
            )
            self.broken = True
