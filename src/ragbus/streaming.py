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

import asyncio
import logging
import math
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


class ChunkedEmit:
    """The :data:`Emit` a host gives its stages, with how long their token emitters may
    gather tokens into one event (see :class:`TokenEmitter`).

    Parameters:
        emit: publishes one transient event.
        chunk_s: seconds over which consecutive tokens travel as one event (default 0:
            one event per delta).
    """

    def __init__(self, emit: Emit, chunk_s: float = 0.0) -> None:
        if chunk_s < 0:
            raise ValueError(f"chunk_s must not be negative, got {chunk_s}")
        self.emit = emit
        self.chunk_s = chunk_s

    async def __call__(self, event: Envelope) -> None:
        await self.emit(event)


class TokenEmitter:
    """Turns the text deltas of one output field into token events and emits them.

    The deltas are normalised like the final value (``value.strip()``): leading
    whitespace is dropped and trailing whitespace is held back until more text follows,
    so in the normal case the tokens' texts concatenate to the field's final value.
    Empty deltas are skipped, a delta longer than a token may be is split. Token ids are
    derived deterministically: ``uuid5(input id, f"{token_type}:{sequence}")``. Should
    ``emit`` break its promise and raise, the error is logged and the rest is not
    streamed: tokens never fail the stage.

    Chunking: the first piece goes out at once (the time to the first token is what a
    reader waits for); what the LM writes in the next ``chunk_s`` seconds is gathered
    and sent as one event, and so on, so one broker message carries several deltas. A
    chunk is an ordinary token event whose ``text`` holds several deltas: consumers see
    no difference but fewer, longer tokens. Use it as an async context manager around
    the LM call: leaving the block sends what is still gathered (after an error it is
    dropped, and the output event carries the whole value anyway).

    Parameters:
        source: the input event the output is produced from.
        emit: the callback that publishes each token.
        token_type: the event type of the tokens, registered as transient with
            :class:`StreamToken` payloads (e.g. ``answer_token``).
        chunk_s: seconds over which deltas are gathered into one token event (default
            None: the ``chunk_s`` of a :class:`ChunkedEmit`, else 0, one event per delta).
    """

    def __init__(
        self, source: Envelope, emit: Emit, token_type: str, *, chunk_s: float | None = None
    ) -> None:
        self.source = source
        self.emit = emit
        self.token_type = token_type
        if chunk_s is None:
            chunk_s = emit.chunk_s if isinstance(emit, ChunkedEmit) else 0.0
        self.chunk_s = chunk_s
        self.sequence = 0
        self.text = ""
        self.broken = False
        self._held = ""
        self._gathered = ""
        self._last_sent = -math.inf
        self._timer: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()

    async def __aenter__(self) -> TokenEmitter:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            await self.close()
        else:
            self._stop_timer()

    async def add(self, delta: str) -> None:
        """Emit (or gather) the part of ``delta`` that is certain to be in the final value.

        Parameters:
            delta: the next piece of the value as the LM streamed it.
        """
        pending = self._held + delta
        if not self.text and not self._gathered:
            pending = pending.lstrip()
        body = pending.rstrip()
        self._held = pending[len(body) :]
        if not body:
            return
        self._gathered += body
        if self._timer is not None:
            return  # a send is due: it takes this delta along
        wait = self._last_sent + self.chunk_s - asyncio.get_running_loop().time()
        if wait <= 0:
            await self._flush()
        else:
            self._timer = asyncio.create_task(self._flush_after(wait), name="ragbus:tokens")

    async def close(self) -> None:
        """Send what is gathered now; call it once the value is complete."""
        self._stop_timer()
        await self._flush()

    def _stop_timer(self) -> None:
        # only ever cancelled while it sleeps: _flush_after clears it before it sends
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _flush_after(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self._timer = None
        await self._flush()

    async def _flush(self) -> None:
        async with self._sending:  # one send at a time, in sequence order
            text, self._gathered = self._gathered, ""
            if text:  # from now on, what comes is gathered for the next chunk
                self._last_sent = asyncio.get_running_loop().time()
            for start in range(0, len(text), MAX_TOKEN_CHARS):
                await self._send(text[start : start + MAX_TOKEN_CHARS])

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
