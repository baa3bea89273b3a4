"""Parsing JSON that arrives from outside: one parser, one error, whatever the input.

Every decoder of untrusted input (the envelope decoder, the gateway's bodies, chat frames,
dead-letter imports and scans) parses through :func:`parse_json`, so no input can surface
as anything but :class:`MalformedJSON`: not a ``RecursionError`` from deep nesting, not a
``UnicodeDecodeError`` from bad bytes, not an unencodable lone surrogate accepted now and
failing later. It uses pydantic-core's parser, which bounds nesting depth (200 levels)
instead of recursing until Python's stack ends.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json


class MalformedJSON(ValueError):
    """The input is not JSON that ragbus accepts; the message says where and why."""


def parse_json(data: bytes | bytearray | str) -> Any:
    """The JSON value in ``data``; raises :class:`MalformedJSON` for anything else.

    Refused: invalid UTF-8, syntax errors, nesting deeper than 200 levels, numbers out
    of range, ``NaN``/``Infinity`` (not JSON), and lone UTF-16 surrogates.

    Parameters:
        data: the raw text or bytes.
    """
    try:
        return from_json(data, allow_inf_nan=False)
    except (ValueError, RecursionError) as exc:
        raise MalformedJSON(str(exc)) from None
