"""The one parser of untrusted JSON: every bad input is a MalformedJSON."""

from __future__ import annotations

import pytest

from ragbus.json_input import MalformedJSON, parse_json


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 20_000,
        b'{"a":' * 5_000,
        b"\xff\xfe",
        b"NaN",
        b"[Infinity]",
        b'"\\ud800"',
        b"1" * 5_000,
        b"[1,]",
        b"",
    ],
    ids=[
        "deep-array",
        "deep-object",
        "bad-utf8",
        "nan",
        "infinity",
        "lone-surrogate",
        "huge-number",
        "trailing-comma",
        "empty",
    ],
)
def test_bad_input_is_malformed_json(data: bytes) -> None:
    with pytest.raises(MalformedJSON):
        parse_json(data)


def test_good_input_parses_as_json() -> None:
    assert parse_json('{"q": ["a", 1, 2.5, null, true], "e": "\\ud83d\\ude00"}') == {
        "q": ["a", 1, 2.5, None, True],
        "e": "\U0001f600",
    }


@pytest.mark.parametrize(
    "data",
    [b'{"k": 1e400}', b"[-1e999]", b"[1" + b"0" * 400 + b".5]", b'{"a": {"b": [2E+308]}}'],
    ids=["exponent", "negative", "long-mantissa", "nested"],
)
def test_a_number_too_large_for_a_float_is_malformed_not_infinity(data: bytes) -> None:
    with pytest.raises(MalformedJSON, match="number out of range"):
        parse_json(data)


def test_a_key_given_twice_is_malformed() -> None:
    with pytest.raises(MalformedJSON, match="duplicate key"):
        parse_json(b'{"type": "query_received", "type": "answer_generated"}')
    assert parse_json(b'[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]  # per object


def test_a_str_with_a_lone_surrogate_is_malformed() -> None:
    with pytest.raises(MalformedJSON):
        parse_json('"\ud800"')
