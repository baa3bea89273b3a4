"""Read events to publish from text: JSON values, JSON lines, envelopes or bare questions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ragbus.events import Envelope, EventType, InvalidEvent, decode_envelope, new_event


def iter_json_values(text: str) -> Iterator[Any]:
    """Every JSON value in ``text``: one document, a JSON array of them, or JSON lines."""
    decoder = json.JSONDecoder()
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise InvalidEvent(
                f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
        if isinstance(value, list):
            yield from value
        else:
            yield value


def to_envelope(value: Any) -> Envelope:
    """An envelope from a JSON value: a (minimal) envelope with ``type``, or a bare
    ``query_received`` payload such as ``{"question": "..."}``."""
    if not isinstance(value, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(value).__name__}")
    if "type" in value:
        return decode_envelope(json.dumps(value))
    wrapped = {"type": EventType.QUERY_RECEIVED.value, "payload": value}
    return decode_envelope(json.dumps(wrapped))


def parse_events(text: str) -> list[Envelope]:
    """All events in ``text``; the first invalid one raises :class:`InvalidEvent` naming its
    position."""
    events = []
    for number, value in enumerate(iter_json_values(text), start=1):
        try:
            events.append(to_envelope(value))
        except InvalidEvent as exc:
            raise InvalidEvent(f"event #{number}: {exc}") from None
    return events


__all__ = ["iter_json_values", "new_event", "parse_events", "to_envelope"]
