"""A question's events as the frames a streaming client sees, in a fixed order.

For every question: ``stage`` (retrieve started), ``stage`` (retrieve done),
``sources``, ``stage`` (generate started), ``token`` ..., ``stage`` (generate done),
``answer``; the route adds ``error`` and ``done``. SSE sends each frame as an event of
that name; the WebSocket as ``{"type": name, ...data}``.

Tokens are forwarded in ``sequence`` order: a repeated sequence (a retried LM call) is
dropped; after a gap (a token lost on the way) no more tokens are forwarded. When the
answer arrives, whatever its text has beyond the tokens forwarded goes out as one last
``token``, so the tokens always concatenate to the answer, also for a cached answer,
which comes without tokens.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Literal, TypeAlias

from ragbus.bus.errors import BusError
from ragbus.client import AnswerTimeout, Client
from ragbus.errors import QueueFullError
from ragbus.events import Envelope
from ragbus.gateway.errors import bus_unavailable, queue_full
from ragbus.gateway.models import (
    AnswerBody,
    SourceItem,
    SourcesFrame,
    StageFrame,
    TokenFrame,
    frame_data,
)
from ragbus.payloads.rag import (
    AnswerGenerated,
    AnswerToken,
    DocumentsRetrieved,
    RagEvent,
    Turn,
)

#: One frame: its name (``stage``, ``sources``, ``token``, ``answer``, ...) and data.
Frame: TypeAlias = tuple[str, dict[str, Any]]

#: Characters of a passage shown with a source.
EXCERPT_CHARS = 240


def _stage(
    stage: Literal["retrieve", "generate"], status: Literal["started", "done"], **fields: Any
) -> Frame:
    return "stage", frame_data(StageFrame(stage=stage, status=status, **fields))


class ProgressFrames:
    """Turns the events of one question, in arrival order, into frames.

    Once :meth:`feed` got the ``answer_generated`` event, :attr:`answer` holds it, and
    :attr:`caught_up` tells whether the tokens fell short of it (a cached answer, or
    tokens lost under load) and its rest went out as one last token.
    """

    def __init__(self) -> None:
        self.text = ""
        self.next_sequence = 0
        self.tokens_lost = False
        self.retrieved = False
        self.caught_up = False
        self.answer: Envelope | None = None

    def started(self, query: Envelope) -> list[Frame]:
        """The frames once the question is published."""
        return [_stage("retrieve", "started", id=query.id)]

    def feed(self, event: Envelope) -> list[Frame]:
        """The frames ``event`` (an event of this question) yields, possibly none."""
        if event.type == RagEvent.DOCUMENTS_RETRIEVED:
            return self._retrieved(event.payload_as(DocumentsRetrieved))
        if event.type == RagEvent.ANSWER_TOKEN:
            return self._token(event.payload_as(AnswerToken))
        if event.type == RagEvent.ANSWER_GENERATED:
            return self._answered(event)
        return []

    def _retrieved(self, retrieved: DocumentsRetrieved) -> list[Frame]:
        if self.retrieved:
            return []
        self.retrieved = True
        sources = [
            SourceItem(
                doc_id=passage.doc_id,
                title=passage.title,
                score=passage.score,
                excerpt=passage.text[:EXCERPT_CHARS],
            )
            for passage in retrieved.passages
        ]
        return [
            _stage("retrieve", "done", ms=retrieved.timings_ms.get("retrieve")),
            ("sources", frame_data(SourcesFrame(sources=sources))),
            _stage("generate", "started"),
        ]

    def _token(self, token: AnswerToken) -> list[Frame]:
        if self.answer is not None or self.tokens_lost or token.sequence < self.next_sequence:
            return []
        if token.sequence > self.next_sequence:
            self.tokens_lost = True
            return []
        return [self._send_text(token.text)]

    def _send_text(self, text: str) -> Frame:
        frame = TokenFrame(sequence=self.next_sequence, text=text)
        self.next_sequence += 1
        self.text += text
        return "token", frame_data(frame)

    def _answered(self, event: Envelope) -> list[Frame]:
        if self.answer is not None:
            return []
        self.answer = event
        payload = event.payload_as(AnswerGenerated)
        frames: list[Frame] = []
        if not self.retrieved:  # not followed, or lost: the answer's sources stand in
            self.retrieved = True
            sources = [SourceItem(**source.model_dump()) for source in payload.sources]
            frames += [
                _stage("retrieve", "done", ms=payload.timings_ms.get("retrieve")),
                ("sources", frame_data(SourcesFrame(sources=sources))),
                _stage("generate", "started"),
            ]
        if payload.answer.startswith(self.text) and len(payload.answer) > len(self.text):
            self.caught_up = True
            frames.append(self._send_text(payload.answer[len(self.text) :]))
        frames += [
            _stage("generate", "done", ms=payload.timings_ms.get("generate")),
            ("answer", AnswerBody.from_event(event).model_dump(mode="json")),
        ]
        return frames


async def question_frames(
    client: Client,
    question: str,
    *,
    k: int | None = None,
    history: list[Turn] | None = None,
    timeout: float = 60.0,
    progress: ProgressFrames | None = None,
) -> AsyncGenerator[Frame, None]:
    """Ask ``question`` through ``client`` and yield its frames, ending with ``answer``
    or with an ``error`` (``timeout``; ``queue_full``, with ``retry_after``, when the
    pipeline's queues are full; or ``unavailable`` when the bus refuses the question, its
    reason in the log, not sent to the client). The caller adds ``done``.
    Closing the iterator stops the wait; nothing is left behind.

    Parameters:
        client: an open client (built with ``follow_tokens=True`` to stream tokens).
        question: the question.
        k: passages to retrieve (default: the retrieve stage's setting).
        history: earlier turns (default none).
        timeout: seconds to wait for the answer, also its deadline (default 60).
        progress: the frame builder to use, to read the answer from afterwards
            (default: a new one).
    """
    progress = progress or ProgressFrames()
    events = client.stream(question, k=k, history=history or (), timeout=timeout)
    try:
        query = await anext(events)
        for frame in progress.started(query):
            yield frame
        async for event in events:
            for frame in progress.feed(event):
                yield frame
    except AnswerTimeout as exc:
        yield "error", {"error": "timeout", "message": str(exc)}
    except QueueFullError as exc:
        refusal = queue_full(exc)
        yield (
            "error",
            {
                "error": refusal.error,
                "message": refusal.message,
                "retry_after": refusal.retry_after,
            },
        )
    except BusError as exc:
        refusal = bus_unavailable("the bus refused the question", exc)
        yield "error", {"error": refusal.error, "message": refusal.message}
    finally:
        await events.aclose()
