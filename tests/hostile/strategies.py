"""Hypothesis strategies for hostile input: raw bytes, JSON of any shape, nasty texts
written by hand, and envelopes and request bodies that are almost right."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from ragbus.pipelines.rag import pipeline as rag

#: Texts no JSON encoder writes but an attacker does.
NASTY_TEXTS = (
    "[" * 20_000,
    '{"a":' * 5_000,
    "[NaN]",
    '{"k": Infinity}',
    '{"k": -Infinity}',
    '{"k": 1e400}',
    '{"k": ' + "9" * 5_000 + "}",
    '{"question": "\\ud800"}',
    '{"question": "\\udfff\\ud800"}',
    '{"type": "query_received", "type": "answer_generated"}',
    '{"question": "q", "question": "r"}',
    '{"question": "q"} {"question": "r"}',
    '{"question": "q"',
    "",
    " ",
    "null",
    "\ufeff{}",
    '{"question": "\\u0000"}',
)

NASTY_BYTES = (b"\xff\xfe\x00", b'{"question": "\xc3\x28"}', b"\xef\xbb\xbf{}", b"\x00" * 64)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50)
)

#: Any JSON value (floats may be NaN or infinite, which ``json.dumps`` writes as
#: ``NaN``/``Infinity``: not JSON, and refused).
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=20,
)


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


def almost(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of ``fields`` (each a good or a bad value) and maybe a stray key."""
    return st.fixed_dictionaries({}, optional={**fields, "stray": json_values})


def _text_or_any(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return good | json_values


_questions = st.text(min_size=1, max_size=60) | st.text(min_size=3990, max_size=4010)
_turns = st.lists(almost({"question": _text_or_any(_questions), "answer": json_values}))
_passages = st.lists(
    almost(
        {
            "doc_id": _text_or_any(st.text(min_size=1, max_size=10)),
            "text": _text_or_any(st.text(min_size=1, max_size=40)),
            "score": _text_or_any(st.floats(allow_nan=True)),
            "title": json_values,
        }
    ),
    max_size=3,
)
_payload_fields: dict[str, st.SearchStrategy[Any]] = {
    "question": _text_or_any(_questions),
    "k": _text_or_any(st.integers(min_value=-5, max_value=60)),
    "history": _text_or_any(_turns),
    "passages": _text_or_any(_passages),
    "answer": _text_or_any(st.text(max_size=40)),
    "model": _text_or_any(st.text(max_size=10)),
    "sequence": _text_or_any(st.integers(min_value=-2, max_value=5)),
    "text": _text_or_any(st.text(max_size=20)),
    "sources": json_values,
}
_datetimes = st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat())

#: Envelopes that are almost right: known and unknown types, payloads of any type's
#: fields, good and bad ids, times, attempts and traces.
envelopes = almost(
    {
        "type": st.sampled_from(sorted(rag.events.names)) | st.text(max_size=20) | json_values,
        "payload": almost(_payload_fields) | json_values,
        "id": st.uuids().map(str) | json_values,
        "correlation_id": st.uuids().map(str) | json_values,
        "causation_id": st.uuids().map(str) | json_values,
        "version": st.integers(min_value=-1, max_value=3) | json_values,
        "created_at": _datetimes | json_values,
        "deadline": _datetimes | json_values,
        "attempt": st.integers(min_value=-1, max_value=10**20) | json_values,
        "replays": st.integers(min_value=-1, max_value=3) | json_values,
        "trace": st.dictionaries(st.text(max_size=10), st.text(max_size=10)) | json_values,
    }
)

_text = st.text(min_size=1, max_size=40).filter(str.strip)
_numbers = st.floats(allow_nan=True, allow_infinity=True)
_timings = st.dictionaries(st.sampled_from(["retrieve", "generate"]), _numbers)
_valid_turns = st.lists(st.fixed_dictionaries({"question": _text, "answer": _text}), max_size=2)
_valid_passages = st.lists(
    st.fixed_dictionaries(
        {"doc_id": _text, "text": _text, "score": _numbers}, optional={"title": st.text(max_size=9)}
    ),
    max_size=3,
)
_valid_payloads = {
    "query_received": st.fixed_dictionaries(
        {"question": _text},
        optional={"k": st.integers(min_value=1, max_value=50), "history": _valid_turns},
    ),
    "documents_retrieved": st.fixed_dictionaries(
        {"question": _text, "passages": _valid_passages},
        optional={"history": _valid_turns, "timings_ms": _timings},
    ),
    "answer_generated": st.fixed_dictionaries(
        {"question": _text, "answer": st.text(max_size=40), "model": st.text(max_size=9)},
        optional={
            "sources": st.lists(
                st.fixed_dictionaries({"doc_id": st.text(max_size=9), "score": _numbers}),
                max_size=2,
            ),
            "extractive": st.booleans(),
            "timings_ms": _timings,
        },
    ),
    "answer_token": st.fixed_dictionaries(
        {"sequence": st.integers(min_value=0, max_value=10**6), "text": st.text(max_size=20)}
    ),
}

#: Envelopes that are valid, but for their numbers (which may be infinite or NaN) and
#: their times (any time zone, any year).
valid_envelopes = st.one_of(
    *(
        st.fixed_dictionaries(
            {"type": st.just(name), "payload": payload},
            optional={
                "id": st.uuids().map(str),
                "correlation_id": st.uuids().map(str),
                "deadline": _datetimes,
                "created_at": _datetimes,
                "attempt": st.integers(min_value=1, max_value=10**30),
                "trace": st.dictionaries(st.text(max_size=10), st.text(max_size=10)),
            },
        )
        for name, payload in sorted(_valid_payloads.items())
    )
)

#: Bodies of ``POST /v1/ask`` and ``/v1/ask/stream`` that are almost right.
ask_bodies = almost(
    {
        "question": _text_or_any(_questions),
        "k": _text_or_any(st.integers(min_value=-5, max_value=60)),
        "timeout": _text_or_any(st.floats(min_value=5, max_value=400)),
        "history": _text_or_any(_turns),
    }
)


def as_bytes(value: Any) -> bytes:
    """``value`` as the bytes of a body: JSON, or the bytes themselves."""
    return value if isinstance(value, bytes) else _dumps(value).encode("utf-8", "surrogatepass")


#: Raw bodies: anything at all, hand-written nasty texts, JSON of any shape.
raw_bodies = (
    st.binary(max_size=300)
    | st.sampled_from(NASTY_BYTES)
    | st.sampled_from(NASTY_TEXTS).map(lambda text: text.encode("utf-8", "surrogatepass"))
    | st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass"))
    | json_values.map(as_bytes)
)


def overflowing(body: bytes) -> bytes:
    """``body`` with its infinities written as numbers too large for a float (``1e999``),
    which a parser may read as infinity unless told not to."""
    return body.replace(b"-Infinity", b"-1e999").replace(b"Infinity", b"1e999")


#: Bodies for the envelope decoder and ``POST /v1/events``.
event_bodies = (
    raw_bodies
    | envelopes.map(as_bytes)
    | envelopes.map(as_bytes).map(overflowing)
    | valid_envelopes.map(as_bytes)
    | valid_envelopes.map(as_bytes).map(overflowing)
    | almost(_payload_fields).map(as_bytes)
)

#: Bodies for the ask routes.
question_bodies = raw_bodies | ask_bodies.map(as_bytes)
