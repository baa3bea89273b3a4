"""The offline LM: a DSPy engine that needs no model and no network.

It reads the adapter's prompt (the inputs from the last user message, each output
field's name and type from the system message) and fills every output field the adapter
asked for (:mod:`ragbus.lm.fill`): fields that ask for a reading of the text (sentiment,
score, topics, entities, or objects and lists of them) from a rule-based text analysis
(:mod:`ragbus.lm.analysis`), every other field extractively, with the context sentences
that best match the question (:mod:`ragbus.lm.extract`). It never writes text of its
own, and says so: its model is ``offline/extractive`` and every response carries
``provider_data={"offline": True, "extractive": ..., ...}`` (``extractive`` is true when
a field quotes the context; then ``answer_found`` and ``passages_quoted`` say what it
quoted; ``texts_analyzed`` counts the distinct texts the analysis read).

``latency_ms`` makes it wait before answering, to model a real LM's I/O: the async engine
sleeps without blocking the event loop, streaming spreads the wait over the deltas.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final, TypeAlias

import dspy
from dspy.lm15 import (
    Message,
    Request,
    Response,
    StreamDeltaEvent,
    StreamEndEvent,
    StreamStartEvent,
    TextDelta,
    TextPart,
    Usage,
)

from ragbus.config.settings import OFFLINE_MODEL
from ragbus.lm.compose import render_reply
from ragbus.lm.fill import FieldFiller
from ragbus.lm.prompt import parse_prompt

#: Words per streamed text delta.
WORDS_PER_DELTA: Final = 3

_PIECE = re.compile(r"\S+\s*|\s+")

#: A ``dspy.lm15`` stream event: ``StreamStartEvent``, ``StreamDeltaEvent`` or ``StreamEndEvent``.
StreamEvent: TypeAlias = Any


def _text_of(parts: Any) -> str:
    if parts is None:
        return ""
    if isinstance(parts, str):
        return parts
    return "".join(part.text for part in parts if isinstance(part, TextPart))


def _last_user_text(request: Request) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return _text_of(message.parts)
    return ""


def _word_count(text: str) -> int:
    return len(text.split())


def _provider_data(filler: FieldFiller) -> dict[str, Any]:
    data: dict[str, Any] = {"offline": True, "extractive": filler.extraction is not None}
    if filler.extraction is not None:
        data["answer_found"] = filler.extraction.found
        data["passages_quoted"] = [index + 1 for index in filler.extraction.passages]
    analyses = filler.analyses
    if analyses:
        data["texts_analyzed"] = len(analyses)
    return data


def answer_request(request: Request) -> Response:
    """The offline response to one adapter request (no waiting).

    Parameters:
        request: a DSPy adapter request whose last user message holds the inputs.
    """
    if not isinstance(request, Request):
        raise TypeError(f"expected a dspy.lm15.Request, got {type(request).__name__}")
    system = _text_of(request.system)
    user = _last_user_text(request)
    prompt = parse_prompt(system, user)
    filler = FieldFiller(prompt)
    text = render_reply(filler.values(), prompt.json_output)
    input_tokens = _word_count(system) + sum(
        _word_count(_text_of(message.parts)) for message in request.messages
    )
    output_tokens = _word_count(text)
    return Response(
        id=None,
        model=OFFLINE_MODEL,
        message=Message.assistant([TextPart(text)]),
        finish_reason="stop",
        usage=Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
        ),
        provider_data=_provider_data(filler),
    )


def text_pieces(text: str, words_per_piece: int = WORDS_PER_DELTA) -> list[str]:
    """``text`` cut into pieces of a few words whose concatenation is ``text``.

    Parameters:
        text: the text to cut.
        words_per_piece: words per piece (default :data:`WORDS_PER_DELTA`).
    """
    tokens = _PIECE.findall(text)
    return [
        "".join(tokens[i : i + words_per_piece]) for i in range(0, len(tokens), words_per_piece)
    ]


def response_events(response: Response) -> tuple[list[StreamEvent], StreamEndEvent]:
    """The start event and text deltas of ``response``, and its end event."""
    text = response.text or ""
    events: list[StreamEvent] = [StreamStartEvent(id=response.id, model=response.model)]
    events.extend(
        StreamDeltaEvent(delta=TextDelta(text=piece, part_index=0)) for piece in text_pieces(text)
    )
    end = StreamEndEvent(
        finish_reason=response.finish_reason,
        usage=response.usage,
        provider_data=response.provider_data,
    )
    return events, end


class ExtractiveEngine:
    """The synchronous offline engine (``dspy.LM(engine=...)``): extractive answers and
    rule-based text analyses.

    Parameters:
        latency_ms: time to wait before answering, in milliseconds (default 0).
    """

    def __init__(self, latency_ms: float = 0.0) -> None:
        if latency_ms < 0:
            raise ValueError(f"latency_ms must not be negative, got {latency_ms}")
        self.latency_ms = latency_ms

    def complete(self, request: Request) -> Response:
        """Answer ``request`` after ``latency_ms``."""
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        return answer_request(request)

    def stream(self, request: Request) -> Iterator[StreamEvent]:
        """Answer ``request`` as a start event, text deltas of a few words each and an
        end event; ``latency_ms`` is spread evenly over the deltas."""
        events, end = response_events(answer_request(request))
        pause = self.latency_ms / 1000 / max(len(events) - 1, 1)
        for event in events:
            if pause and isinstance(event, StreamDeltaEvent):
                time.sleep(pause)
            yield event
        yield end

    def close(self) -> None:
        """Release nothing: the engine holds no resources."""


class AsyncExtractiveEngine:
    """The asynchronous offline engine (``dspy.LM(async_engine=...)``); it waits with
    ``asyncio.sleep``, so concurrent calls overlap their latency.

    Parameters:
        latency_ms: time to wait before answering, in milliseconds (default 0).
    """

    def __init__(self, latency_ms: float = 0.0) -> None:
        if latency_ms < 0:
            raise ValueError(f"latency_ms must not be negative, got {latency_ms}")
        self.latency_ms = latency_ms

    async def complete(self, request: Request) -> Response:
        """Answer ``request`` after ``latency_ms``."""
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        return answer_request(request)

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """Answer ``request`` as a start event, text deltas of a few words each and an
        end event; ``latency_ms`` is spread evenly over the deltas."""
        events, end = response_events(answer_request(request))
        pause = self.latency_ms / 1000 / max(len(events) - 1, 1)
        for event in events:
            if pause and isinstance(event, StreamDeltaEvent):
                await asyncio.sleep(pause)
            yield event
        yield end

    async def aclose(self) -> None:
        """Release nothing: the engine holds no resources."""


def offline_lm(latency_ms: float = 0.0) -> dspy.LM:
    """A ``dspy.LM`` named ``offline/extractive`` backed by the offline engines, with
    DSPy's retries and cache off.

    Parameters:
        latency_ms: simulated wait of each call, in milliseconds (default 0).
    """
    return dspy.LM(
        OFFLINE_MODEL,
        engine=ExtractiveEngine(latency_ms),
        async_engine=AsyncExtractiveEngine(latency_ms),
        num_retries=0,
        cache=False,
    )
