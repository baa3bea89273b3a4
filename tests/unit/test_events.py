"""The event contract: limits, deterministic ids, minimal envelopes, schemas."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from ragbus.events import MAX_ENVELOPE_BYTES, Envelope, InvalidEvent, derived_event_id, new_event
from ragbus.payloads.rag import DocumentsRetrieved, QueryReceived, RagEvent
from ragbus.pipelines.rag import pipeline as rag


def test_minimal_envelope_gets_id_time_and_correlation() -> None:
    event = rag.events.decode(b'{"type": "query_received", "payload": {"question": "Why?"}}')
    assert isinstance(event.id, uuid.UUID)
    assert event.correlation_id == event.id
    assert event.causation_id is None
    assert event.created_at.tzinfo is not None
    assert event.version == 1
    assert event.attempt == 1
    assert event.payload == {"question": "Why?", "k": None, "history": []}


def test_payload_is_validated_against_its_type() -> None:
    with pytest.raises(InvalidEvent, match=r"payload\.question"):
        rag.events.decode(b'{"type": "query_received", "payload": {"question": ""}}')
    with pytest.raises(InvalidEvent, match=r"payload\.k"):
        rag.events.decode(b'{"type": "query_received", "payload": {"question": "q", "k": 51}}')
    with pytest.raises(InvalidEvent, match=r"payload\.x: Extra inputs"):
        rag.events.decode(b'{"type": "query_received", "payload": {"question": "q", "x": 1}}')


@pytest.mark.parametrize(
    ("question", "ok"), [("a", True), ("a" * 4000, True), ("", False), ("a" * 4001, False)]
)
def test_question_length_limits(question: str, ok: bool) -> None:
    if ok:
        assert QueryReceived(question=question).question == question
    else:
        with pytest.raises(ValidationError):
            QueryReceived(question=question)


@pytest.mark.parametrize(("k", "ok"), [(1, True), (50, True), (0, False), (51, False)])
def test_k_limits(k: int, ok: bool) -> None:
    if ok:
        assert QueryReceived(question="q", k=k).k == k
    else:
        with pytest.raises(ValidationError):
            QueryReceived(question="q", k=k)


def test_passage_count_limit() -> None:
    passage = {"doc_id": "d", "text": "t", "score": 1.0}
    DocumentsRetrieved(question="q", passages=[passage] * 50)  # type: ignore[list-item]
    with pytest.raises(ValidationError):
        DocumentsRetrieved(question="q", passages=[passage] * 51)  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"type": "nope", "payload": {}}', "unknown event type"),
        (b'{"payload": {"question": "q"}}', "type"),
        (b"\xff\xfe", "malformed JSON"),
    ],
)
def test_invalid_messages_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        rag.events.decode(body)


def test_too_large_message_is_refused_before_parsing() -> None:
    body = json.dumps({"type": "query_received", "payload": {"question": "q" * MAX_ENVELOPE_BYTES}})
    with pytest.raises(InvalidEvent, match="too large"):
        rag.events.decode(body.encode())


def test_derived_events_get_deterministic_ids_and_keep_correlation() -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    query = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question="q"), deadline=deadline)
    first = query.derive(
        RagEvent.DOCUMENTS_RETRIEVED, DocumentsRetrieved(question="q", passages=[])
    )
    again = query.derive(
        RagEvent.DOCUMENTS_RETRIEVED, DocumentsRetrieved(question="q", passages=[])
    )
    assert first.id == again.id == derived_event_id(query.id, RagEvent.DOCUMENTS_RETRIEVED)
    assert first.id != query.id
    assert first.correlation_id == query.id
    assert first.causation_id == query.id
    assert first.deadline == deadline


def test_encode_decode_round_trip() -> None:
    query = rag.events.new(RagEvent.QUERY_RECEIVED, {"question": "q", "k": 3})
    assert rag.events.decode(query.encode()) == query


def test_an_envelope_is_encoded_once_and_a_copy_again() -> None:
    query = rag.events.new(RagEvent.QUERY_RECEIVED, {"question": "q"})
    assert query.encode() is query.encode()
    retry = query.model_copy(update={"attempt": 2})
    assert json.loads(retry.encode())["attempt"] == 2
    assert json.loads(query.encode())["attempt"] == 1  # the original keeps its own


def test_expiry() -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    assert new_event(RagEvent.QUERY_RECEIVED, {"question": "q"}, deadline=past).is_expired()
    assert not new_event(RagEvent.QUERY_RECEIVED, {"question": "q"}).is_expired()


def test_naive_times_are_taken_as_utc() -> None:
    event = Envelope(
        type="query_received", payload={"question": "q"}, deadline=datetime(2030, 1, 1)
    )
    assert event.deadline is not None and event.deadline.tzinfo is UTC


def test_schemas_cover_every_type() -> None:
    schemas = rag.events.schemas()
    assert set(schemas["payloads"]) == {t.value for t in RagEvent}
    assert "question" in schemas["payloads"]["query_received"]["properties"]
    assert schemas["payloads"]["query_received"]["properties"]["question"]["maxLength"] == 4000
    with pytest.raises(InvalidEvent, match="unknown event type 'nope'"):
        rag.events.schemas("nope")
