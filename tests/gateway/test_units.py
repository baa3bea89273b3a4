"""The gateway's parts on their own: sessions, the frames of a question, SSE encoding."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from starlette.types import Message

from ragbus.events import Envelope, new_event
from ragbus.gateway.models import SESSION_ID_PATTERN
from ragbus.gateway.progress import ProgressFrames
from ragbus.gateway.sessions import SessionStore, UnknownSession, new_session_id
from ragbus.gateway.sse import PING, EventStreamResponse, encode_event
from ragbus.payloads.rag import (
    AnswerGenerated,
    AnswerToken,
    DocumentsRetrieved,
    Passage,
    QueryReceived,
    RagEvent,
    Source,
    Turn,
)


def _turn(number: int) -> Turn:
    return Turn(question=f"q{number}", answer=f"a{number}")


def test_sessions_keep_the_last_turns_of_the_most_recent_sessions() -> None:
    store = SessionStore(max_sessions=2, max_turns=2)
    for number in range(3):
        store.record("one", "me", _turn(number))
    store.record("two", "me", _turn(9))
    assert store.history("one", "me") == [_turn(1), _turn(2)]  # touches "one"
    store.record("three", "me", _turn(7))  # evicts "two", the least recently used
    assert "two" not in store and len(store) == 2
    assert store.history("two", "me") == []
    assert store.history("three", "me") == [_turn(7)]


def test_sessions_with_no_turns_kept_remember_nothing() -> None:
    store = SessionStore(max_turns=0)
    store.record("one", "me", _turn(1))
    assert store.history("one", "me") == [] and len(store) == 0
    with pytest.raises(ValueError):
        SessionStore(max_sessions=0)


def test_a_session_is_read_and_written_only_by_its_owner() -> None:
    store = SessionStore()
    store.record("mine", "owner-a", _turn(1))
    with pytest.raises(UnknownSession):
        store.history("mine", "owner-b")
    with pytest.raises(UnknownSession):
        store.record("mine", "owner-b", _turn(2))
    assert store.history("mine", "owner-a") == [_turn(1)]
    assert store.owns("mine", "owner-a") and not store.owns("mine", "owner-b")
    store.discard("mine")
    assert "mine" not in store


def test_session_ids_are_unguessable_and_fit_the_message_pattern() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(SESSION_ID_PATTERN.strip("^$"), i) and len(i) >= 24 for i in ids)


def _events(answer: str) -> tuple[Envelope, Envelope, Envelope]:
    query = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question="q"))
    passage = Passage(doc_id="d#0", title="D", text="text " * 100, score=1.5)
    retrieved = query.derive(
        RagEvent.DOCUMENTS_RETRIEVED,
        DocumentsRetrieved(question="q", passages=[passage], timings_ms={"retrieve": 1.0}),
    )
    generated = retrieved.derive(
        RagEvent.ANSWER_GENERATED,
        AnswerGenerated(
            question="q",
            answer=answer,
            model="m",
            sources=[Source(doc_id="d#0", title="D", score=1.5)],
            timings_ms={"retrieve": 1.0, "generate": 2.0},
        ),
    )
    return query, retrieved, generated


def _token(source: Envelope, sequence: int, text: str) -> Envelope:
    return source.derive(
        RagEvent.ANSWER_TOKEN, AnswerToken(sequence=sequence, text=text), part=sequence
    )


def _texts(frames: list[tuple[str, dict[str, object]]]) -> list[object]:
    return [data["text"] for name, data in frames if name == "token"]


def test_frames_come_in_order_and_tokens_add_up_to_the_answer() -> None:
    query, retrieved, generated = _events("Hello brave new world")
    progress = ProgressFrames()
    frames = progress.started(query) + progress.feed(retrieved)
    for event in [
        _token(retrieved, 0, "Hello"),
        _token(retrieved, 0, "Hello"),  # a retried call sends it again
        _token(retrieved, 1, " brave"),
    ]:
        frames += progress.feed(event)
    frames += progress.feed(generated)
    assert [name for name, _ in frames] == [
        "stage",
        "stage",
        "sources",
        "stage",
        "token",
        "token",
        "token",  # the rest of the answer
        "stage",
        "answer",
    ]
    assert _texts(frames) == ["Hello", " brave", " new world"]
    assert frames[0][1]["id"] == str(query.id)
    assert frames[2][1]["sources"][0]["excerpt"].startswith("text text")
    assert progress.answer == generated
    assert progress.caught_up  # " new world" came with the answer


def test_after_a_lost_token_the_rest_comes_with_the_answer() -> None:
    _, retrieved, generated = _events("one two three")
    progress = ProgressFrames()
    frames = progress.feed(retrieved)
    frames += progress.feed(_token(retrieved, 0, "one"))
    frames += progress.feed(_token(retrieved, 2, " three"))  # sequence 1 was lost
    frames += progress.feed(_token(retrieved, 1, " two"))  # too late: no longer in order
    frames += progress.feed(generated)
    assert _texts(frames) == ["one", " two three"]


def test_a_cached_answer_streams_as_one_token_with_its_sources() -> None:
    _, _, generated = _events("all at once")
    frames = ProgressFrames().feed(generated)
    assert [name for name, _ in frames] == [
        "stage",
        "sources",
        "stage",
        "token",
        "stage",
        "answer",
    ]
    assert _texts(frames) == ["all at once"]


def test_a_fully_streamed_answer_needs_no_catching_up() -> None:
    _, retrieved, generated = _events("one two")
    progress = ProgressFrames()
    frames = progress.feed(_token(retrieved, 0, "one"))
    frames += progress.feed(_token(retrieved, 1, " two"))
    frames += progress.feed(generated)
    assert _texts(frames) == ["one", " two"] and not progress.caught_up


def test_sse_events_are_one_json_line_each() -> None:
    assert encode_event("token", {"text": "a\nb"}) == b'event: token\ndata: {"text":"a\\nb"}\n\n'


async def test_an_idle_stream_sends_keep_alive_comments() -> None:
    async def slow_events() -> AsyncIterator[bytes]:
        await asyncio.sleep(0.12)
        yield encode_event("done", {})

    sent: list[Message] = []
    response = EventStreamResponse(slow_events(), ping_s=0.05)

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await response({"type": "http"}, receive, send)
    bodies = [message.get("body", b"") for message in sent[1:]]
    assert bodies.count(PING) >= 1
    assert bodies[-2:] == [encode_event("done", {}), b""]
