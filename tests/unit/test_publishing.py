"""Reading events to publish: one document, an array, JSON lines; every bad text an
InvalidEvent that says where."""

from __future__ import annotations

import pytest

from ragbus.events import MAX_ENVELOPE_BYTES, InvalidEvent
from ragbus.pipelines.rag import pipeline as rag
from ragbus.publishing import iter_json_values, parse_events, to_envelope


def test_one_document_an_array_or_json_lines() -> None:
    assert list(iter_json_values('{"question": "a"}')) == [{"question": "a"}]
    assert list(iter_json_values('[{"question": "a"}, {"question": "b"}]')) == [
        {"question": "a"},
        {"question": "b"},
    ]
    lines = '{"question": "a"}\n\n{"type": "query_received", "payload": {"question": "b"}}\n'
    assert [event.payload["question"] for event in parse_events(lines, rag)] == ["a", "b"]
    pretty = '{\n  "question": "a"\n}\n'
    assert list(iter_json_values(pretty)) == [{"question": "a"}]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 20_000, "malformed JSON: recursion limit exceeded"),
        ('{"question": "a"}\n{"question": ' + "[" * 20_000, "malformed JSON on line 2"),
        ('{"question": "a"}\nnot json', "malformed JSON on line 2"),
        ('{\n  "question": "a",\n}', "malformed JSON: "),
        ('{"question": "a", "question": "b"}', "duplicate key"),
        ('{"question": "a", "k": 1e400}', "number out of range"),
    ],
)
def test_bad_text_is_an_invalid_event_that_says_where(text: str, reason: str) -> None:
    with pytest.raises(InvalidEvent, match="malformed JSON") as raised:
        parse_events(text, rag)
    assert reason in str(raised.value)


def test_an_envelope_larger_than_a_stage_accepts_is_refused_before_publishing() -> None:
    padded = {"type": "query_received", "payload": {"question": "q"}}
    assert to_envelope(padded, rag).payload == {"question": "q", "k": None, "history": []}
    with pytest.raises(InvalidEvent, match="too large"):
        to_envelope({**padded, "trace": {"pad": "x" * MAX_ENVELOPE_BYTES}}, rag)
    with pytest.raises(InvalidEvent, match="expected a JSON object, got array"):
        to_envelope([1], rag)
