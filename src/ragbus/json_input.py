"""Parsing JSON that arrives from outside: one parser, one error, whatever the input.

Every decoder of untrusted input (the envelope decoder, the gateway's bodies, chat frames,
dead-letter imports and scans, ``ragbus publish``) parses through :func:`parse_json`, so
no input can surface as anything but :class:`MalformedJSON`: not a ``RecursionError`` from
deep nesting, not a ``UnicodeDecodeError`` from bad bytes, not an unencodable lone
surrogate accepted now and failing later, not a number that silently became infinity.
It uses jiter (pydantic-core's parser), which bounds nesting depth (200 levels) instead
of recursing until Python's stack ends, and can refuse duplicate keys.
"""

from __future__ import annotations

import math
from typing import Any

from jiter import from_json


class MalformedJSON(ValueError):
    """The input is not JSON that ragbus accepts; the message says where and why."""


def parse_json(data: bytes | bytearray | str) -> Any:
    """The JSON value in ``data``; raises :class:`MalformedJSON` for anything else.

    Refused: invalid UTF-8, syntax errors, nesting deeper than 200 levels, integers of
    more than 4300 digits, numbers too large for a float (``1e400``, which would read as
    infinity), ``NaN``/``Infinity`` (not JSON), lone UTF-16 surrogates, and objects with
    a key twice (``{"type": "a", "type": "b"}``: parsers disagree on which one counts, so
    the gateway and a worker could read different events from the same bytes).

    Parameters:
        data: the raw text or bytes.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    try:
        value = from_json(raw, allow_inf_nan=False, catch_duplicate_keys=True, cache_mode="keys")
    except (ValueError, RecursionError) as exc:
        raise MalformedJSON(str(exc)) from None
    _refuse_infinities(value)
    return value


def json_type_name(value: Any) -> str:
    """The JSON name of a parsed value's type: ``object``, ``array``, ``string``,
    ``number``, ``boolean`` or ``null`` (for messages to callers in any language)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _refuse_infinities(value: Any) -> None:
    """Raise :class:`MalformedJSON` if ``value`` holds a float that overflowed to
    infinity (jiter reads ``1e400`` as ``inf`` even with ``allow_inf_nan=False``).
    Iterative, so depth costs no stack; a few microseconds for an envelope."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise MalformedJSON("number out of range: too large for a 64-bit float")
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
