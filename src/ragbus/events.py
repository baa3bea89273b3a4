"""The event contract: the Envelope every message travels in, and the typed payloads.

Every message on the wire is one JSON object, an :class:`Envelope`. Its ``payload``
is validated against the model registered for its ``type`` in :data:`PAYLOAD_MODELS`.
A producer in any language may send a *minimal envelope* (``type`` + ``payload``);
ragbus fills ``id``, ``created_at`` and ``correlation_id``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails

from ragbus.json_input import MalformedJSON, json_type_name, parse_json

#: Largest envelope (encoded JSON) a stage accepts, in bytes.
MAX_ENVELOPE_BYTES: Final = 1_000_000
MAX_QUESTION_CHARS: Final = 4000
MAX_PASSAGES: Final = 50
MAX_PASSAGE_CHARS: Final = 20_000
MAX_ANSWER_CHARS: Final = 20_000
MAX_HISTORY_TURNS: Final = 20


class EventType(StrEnum):
    """The routing keys of the events ragbus knows."""

    QUERY_RECEIVED = "query_received"
    DOCUMENTS_RETRIEVED = "documents_retrieved"
    ANSWER_GENERATED = "answer_generated"
    ANSWER_TOKEN = "answer_token"


class InvalidEvent(ValueError):
    """A message that is not a valid event: malformed JSON, unknown type, schema violation,
    or too large. Always permanent: it goes to the dead-letter queue, never retried."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Turn(_Strict):
    """One earlier exchange of a conversation, passed to the LM as history."""

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    answer: str = Field(max_length=MAX_ANSWER_CHARS)


class QueryReceived(_Strict):
    """A question to answer.

    Parameters:
        question: the question, 1..4000 characters.
        k: how many passages to retrieve, 1..50 (default: the retrieve stage's setting,
            ``RAGBUS_TOP_K``).
        history: earlier turns of the same conversation, at most 20 (default none).
    """

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    k: int | None = Field(default=None, ge=1, le=MAX_PASSAGES)
    history: list[Turn] = Field(default_factory=list, max_length=MAX_HISTORY_TURNS)


class Passage(_Strict):
    """A retrieved piece of a document, with its BM25 score."""

    doc_id: str = Field(min_length=1, max_length=500)
    title: str = Field(default="", max_length=500)
    text: str = Field(min_length=1, max_length=MAX_PASSAGE_CHARS)
    score: float


class DocumentsRetrieved(_Strict):
    """The passages found for a question (the retrieve stage's output)."""

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    passages: list[Passage] = Field(max_length=MAX_PASSAGES)
    history: list[Turn] = Field(default_factory=list, max_length=MAX_HISTORY_TURNS)
    timings_ms: dict[str, float] = Field(default_factory=dict)


class Source(_Strict):
    """A document an answer was drawn from."""

    doc_id: str
    title: str = ""
    score: float


class AnswerGenerated(_Strict):
    """The answer to a question (the generate stage's output).

    ``extractive`` is true when the answer was assembled from passage sentences by the
    offline LM rather than written by a generative model.
    """

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    answer: str = Field(max_length=MAX_ANSWER_CHARS)
    reasoning: str = Field(default="", max_length=MAX_ANSWER_CHARS)
    sources: list[Source] = Field(default_factory=list, max_length=MAX_PASSAGES)
    model: str
    extractive: bool = False
    timings_ms: dict[str, float] = Field(default_factory=dict)


class AnswerToken(_Strict):
    """A piece of an answer while the generate stage writes it: a *transient* event.

    Transient events are interim progress for clients that stream (the gateway): they are
    not persisted, not confirmed as routed, dropped when nobody listens, and never
    retried or dead-lettered. ``answer_generated`` stays the authoritative result; in the
    normal case the ``text`` of a question's tokens, in ``sequence`` order, concatenates to
    its ``answer``. A cached or coalesced answer comes without tokens, and a retried call
    may send a sequence again: consumers drop a ``sequence`` they already have.

    Parameters:
        sequence: position of this piece in the answer, from 0.
        text: the piece (a delta, often a few words), at most 20,000 characters.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    sequence: int = Field(ge=0)
    text: str = Field(max_length=MAX_ANSWER_CHARS)


Payload = QueryReceived | DocumentsRetrieved | AnswerGenerated | AnswerToken

#: The payload model for each event type. Extend it to add event types.
PAYLOAD_MODELS: Final[dict[str, type[BaseModel]]] = {
    EventType.QUERY_RECEIVED: QueryReceived,
    EventType.DOCUMENTS_RETRIEVED: DocumentsRetrieved,
    EventType.ANSWER_GENERATED: AnswerGenerated,
    EventType.ANSWER_TOKEN: AnswerToken,
}

#: Current schema version of each payload.
PAYLOAD_VERSIONS: Final[dict[str, int]] = dict.fromkeys(PAYLOAD_MODELS, 1)


def _under_payload(exc: ValidationError) -> ValidationError:
    """``exc`` with every error location prefixed by ``payload``."""
    details: list[InitErrorDetails] = []
    for error in exc.errors():
        detail: InitErrorDetails = {
            "type": error["type"],
            "loc": ("payload", *error["loc"]),
            "input": error["input"],
        }
        if "ctx" in error:
            detail["ctx"] = error["ctx"]
        details.append(detail)
    return ValidationError.from_exception_data("Envelope", details)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def derived_event_id(
    causation_id: uuid.UUID, event_type: str, part: str | int | None = None
) -> uuid.UUID:
    """The deterministic id of the event of ``event_type`` produced from ``causation_id``.

    A redelivered input therefore yields an output with the same id, and consumers
    drop the duplicate.

    Parameters:
        causation_id: the id of the input event.
        event_type: the output's type.
        part: which of several outputs of one type this is, e.g. a token's sequence
            number: the name becomes ``f"{event_type}:{part}"`` (default: the only one).
    """
    return uuid.uuid5(causation_id, event_type if part is None else f"{event_type}:{part}")


class Envelope(BaseModel):
    """One event on the wire.

    Parameters:
        type: the event type and routing key (required).
        payload: the typed body for ``type`` (required), validated on construction.
        id: unique event id (default: a new UUID4).
        version: payload schema version (default: the current one for ``type``).
        correlation_id: the originating query's id (default: ``id``).
        causation_id: the event this one was produced from (default: none).
        created_at: UTC creation time (default: now).
        deadline: absolute UTC time after which the work is useless (default: none).
        attempt: delivery attempt for the current stage, counted by ragbus (default 1).
        replays: how often an operator replayed this event from a DLQ (default 0).
        trace: W3C trace context (``traceparent``/``tracestate``), optional.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str = Field(min_length=1, max_length=100)
    version: int = Field(default=0, ge=0)
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    created_at: datetime = Field(default_factory=utc_now)
    deadline: datetime | None = None
    attempt: int = Field(default=1, ge=1)
    replays: int = Field(default=0, ge=0)
    trace: dict[str, str] | None = None
    payload: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _dump_payload_model(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("payload"), BaseModel):
            data = {**data, "payload": data["payload"].model_dump(mode="json")}
        return data

    @model_validator(mode="after")
    def _fill_and_check(self) -> Envelope:
        model = PAYLOAD_MODELS.get(self.type)
        if model is None:
            known = ", ".join(sorted(PAYLOAD_MODELS))
            raise ValueError(f"unknown event type {self.type!r} (known: {known})")
        try:
            normalized = model.model_validate(self.payload).model_dump(mode="json")
        except ValidationError as exc:
            raise _under_payload(exc) from None
        object.__setattr__(self, "payload", normalized)
        if self.correlation_id is None:
            object.__setattr__(self, "correlation_id", self.id)
        if self.version == 0:
            object.__setattr__(self, "version", PAYLOAD_VERSIONS[self.type])
        for name in ("created_at", "deadline"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                object.__setattr__(self, name, value.replace(tzinfo=UTC))
        return self

    @property
    def correlation(self) -> uuid.UUID:
        """``correlation_id``, always set after validation."""
        assert self.correlation_id is not None
        return self.correlation_id

    def typed_payload(self) -> Any:
        """The payload as its pydantic model (``QueryReceived``, ...)."""
        return PAYLOAD_MODELS[self.type].model_validate(self.payload)

    def derive(
        self,
        event_type: str,
        payload: BaseModel | dict[str, Any],
        *,
        part: str | int | None = None,
    ) -> Envelope:
        """A new event produced from this one: deterministic id, same correlation and
        deadline, ``causation_id`` = this id, ``attempt`` reset to 1.

        Parameters:
            event_type: the new event's type.
            payload: its payload (a model or a dict).
            part: distinguishes several events of one type produced from this one, e.g.
                a token's sequence number (default: none, the only one); see
                :func:`derived_event_id`.
        """
        return Envelope(
            id=derived_event_id(self.id, event_type, part),
            type=event_type,
            correlation_id=self.correlation,
            causation_id=self.id,
            deadline=self.deadline,
            trace=self.trace,
            payload=payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload,
        )

    def is_expired(self, now: datetime | None = None) -> bool:
        """Whether ``deadline`` has passed (``now`` defaults to the current UTC time)."""
        return self.deadline is not None and (now or utc_now()) >= self.deadline

    def encode(self) -> bytes:
        """The envelope as compact UTF-8 JSON, as it travels on the wire."""
        return self.model_dump_json(exclude_none=True).encode()


def new_event(
    event_type: str,
    payload: BaseModel | dict[str, Any],
    *,
    deadline: datetime | None = None,
) -> Envelope:
    """A fresh originating event (its own correlation id).

    Parameters:
        event_type: the event type.
        payload: the payload model or a dict valid for ``event_type``.
        deadline: absolute UTC deadline (default: none).
    """
    body = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    return Envelope(type=event_type, payload=body, deadline=deadline)


def decode_envelope(body: bytes | str, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> Envelope:
    """Parse and validate one wire message; raises :class:`InvalidEvent` with a clear reason.

    Parameters:
        body: the raw message body (JSON).
        max_bytes: largest accepted body (default :data:`MAX_ENVELOPE_BYTES`).
    """
    size = len(body.encode() if isinstance(body, str) else body)
    if size > max_bytes:
        raise InvalidEvent(f"event is too large: {size} bytes (limit {max_bytes})")
    try:
        data = parse_json(body)
    except MalformedJSON as exc:
        raise InvalidEvent(f"malformed JSON: {exc}") from None
    return validate_envelope(data)


def validate_envelope(data: Any) -> Envelope:
    """The envelope in an already parsed JSON value (see
    :func:`ragbus.json_input.parse_json`); raises :class:`InvalidEvent` with a clear reason.

    Parameters:
        data: the parsed value; anything but an object is refused.
    """
    if not isinstance(data, dict):
        raise InvalidEvent(f"an event must be a JSON object, got {json_type_name(data)}")
    try:
        return Envelope.model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each invalid field and why."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "event"
        problems.append(f"{where}: {error['msg']}")
    return "invalid event: " + "; ".join(problems)


def json_schemas(event_type: str | None = None) -> dict[str, Any]:
    """JSON Schema of the envelope and of each payload (or of one ``event_type``)."""
    types = [event_type] if event_type else sorted(PAYLOAD_MODELS)
    unknown = [name for name in types if name not in PAYLOAD_MODELS]
    if unknown:
        raise KeyError(
            f"unknown event type {unknown[0]!r} (known: {', '.join(sorted(PAYLOAD_MODELS))})"
        )
    return {
        "envelope": Envelope.model_json_schema(),
        "payloads": {name: PAYLOAD_MODELS[name].model_json_schema() for name in types},
    }
