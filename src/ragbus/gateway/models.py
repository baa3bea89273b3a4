"""The gateway's request and response bodies, and the frames it streams (pydantic v2).

The same models validate requests and produce the OpenAPI document, so the document
cannot drift from what the gateway accepts.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragbus.events import Envelope
from ragbus.payloads.rag import (
    MAX_HISTORY_TURNS,
    MAX_PASSAGES,
    MAX_QUESTION_CHARS,
    Source,
    Turn,
)

#: The pattern of a chat session id: letters, digits and ``_.:-``.
SESSION_ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class AskRequest(_Body):
    """A question for ``POST /v1/ask`` and ``POST /v1/ask/stream``.

    Parameters:
        question: the question, 1..4000 characters.
        k: passages to retrieve, 1..50 (default: the retrieve stage's ``RAGBUS_TOP_K``).
        timeout: seconds to wait for the answer, also its deadline (default
            ``RAGBUS_GATEWAY_TIMEOUT_S``; at most ``RAGBUS_GATEWAY_MAX_TIMEOUT_S``).
        history: earlier turns of the conversation, at most 20 (default none).
    """

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    k: int | None = Field(default=None, ge=1, le=MAX_PASSAGES)
    timeout: float | None = Field(default=None, gt=0)
    history: list[Turn] = Field(default_factory=list, max_length=MAX_HISTORY_TURNS)


class ChatMessage(_Body):
    """One message a WebSocket chat client sends to ``/v1/ws``.

    Parameters:
        question: the question, 1..4000 characters.
        session_id: a conversation to continue: one the gateway issued to this client
            (in a ``done`` frame); its last turns are passed as history. Default: the
            connection's own session. Sessions belong to the API token when one is set
            (a new connection may continue them), else to the connection that opened
            them; another client's session is refused (``unknown_session``).
        k: passages to retrieve, 1..50 (default: the retrieve stage's setting).
    """

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    session_id: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=SESSION_ID_PATTERN
    )
    k: int | None = Field(default=None, ge=1, le=MAX_PASSAGES)


class AnswerBody(BaseModel):
    """An answer: the ``answer_generated`` payload with the event's ids."""

    id: uuid.UUID = Field(description="the answer_generated event's id")
    correlation_id: uuid.UUID = Field(description="the question's id")
    question: str
    answer: str
    reasoning: str = ""
    sources: list[Source] = Field(default_factory=list)
    model: str
    extractive: bool = False
    timings_ms: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def from_event(cls, event: Envelope) -> AnswerBody:
        """The body for an ``answer_generated`` event."""
        return cls(id=event.id, correlation_id=event.correlation, **event.payload)


class ErrorBody(BaseModel):
    """What went wrong: a short code and a sentence naming the reason."""

    error: str = Field(description="unauthorized, invalid_request, timeout, too_large, ...")
    message: str
    retry_after: float | None = Field(
        default=None,
        description="WebSocket `rate_limited` frames: seconds to wait before asking again "
        "(HTTP 429 responses carry the `Retry-After` header instead)",
    )


class Accepted(BaseModel):
    """An event the gateway published for another service (``POST /v1/events``)."""

    id: uuid.UUID
    type: str
    correlation_id: uuid.UUID


class Health(BaseModel):
    """``/healthz`` and ``/readyz``."""

    ok: bool
    bus: str
    detail: str = ""


class StageFrame(BaseModel):
    """A stage started or finished (stream event ``stage``)."""

    stage: Literal["retrieve", "generate"]
    status: Literal["started", "done"]
    ms: float | None = Field(default=None, description="the stage's time, when done")
    id: uuid.UUID | None = Field(default=None, description="the question's id (first frame)")


class SourceItem(BaseModel):
    """A retrieved passage, as shown while the answer is written."""

    doc_id: str
    title: str = ""
    score: float
    excerpt: str = Field(default="", description="the passage's first characters")


class SourcesFrame(BaseModel):
    """The passages retrieved for the question (stream event ``sources``)."""

    sources: list[SourceItem]


class TokenFrame(BaseModel):
    """A piece of the answer (stream event ``token``); in order, the pieces concatenate
    to the answer's text."""

    sequence: int
    text: str


class DoneFrame(BaseModel):
    """The end of one answer's stream (stream event ``done``)."""

    session_id: str | None = Field(default=None, description="WebSocket: the session")


#: The models the OpenAPI document's components are built from.
DOCUMENTED_MODELS: tuple[type[BaseModel], ...] = (
    AskRequest,
    ChatMessage,
    AnswerBody,
    ErrorBody,
    Accepted,
    Health,
    StageFrame,
    SourcesFrame,
    TokenFrame,
    DoneFrame,
)


def frame_data(model: BaseModel) -> dict[str, Any]:
    """A frame's JSON-ready data, without unset optional fields."""
    return model.model_dump(mode="json", exclude_none=True)
