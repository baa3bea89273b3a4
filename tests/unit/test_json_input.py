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
