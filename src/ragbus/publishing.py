"""Read events to publish from text: JSON values, JSON lines, envelopes or bare questions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ragbus.events import (
    MAX_ENVELOPE_BYTES,
    Envelope,
    EventType,
    InvalidEvent,
    new_event,
    validate_envelope,
)
from ragbus.json_input import MalformedJSON, json_type_name, parse_json


def iter_json_values(text: str) -> Iterator[Any]:
    """Every JSON value in ``text``: one document (a JSON array stands for its items),
    or JSON lines (one value per line; blank lines are skipped).

    Every value is parsed by :func:`ragbus.json_input.parse_json`, so deep nesting, bad
    escapes or duplicate keys raise :class:`InvalidEvent`, never another error. When the
    text is neither one document nor JSON lines, the message names the first bad line
    (or, when the first line is already bad, the document's own error and position).
    """
    try:
        values = [parse_json(text)]
    except MalformedJSON as document_error:
        values = _json_lines(text, document_error)
    for value in values:
        if isinstance(value, list):
            yield from value
        else:
            yield value


def _json_lines(text: str, document_error: MalformedJSON) -> list[Any]:
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    values = []
    for position, (number, line) in enumerate(lines):
        try:
            values.append(parse_json(line))
        except MalformedJSON as exc:
            if position == 0:  # not JSON lines either: the document's error says more
                raise InvalidEvent(f"malformed JSON: {document_error}") from None
            raise InvalidEvent(f"malformed JSON on line {number}: {exc}") from None
    return values


def to_envelope(value: Any, *, bare_type: str = EventType.QUERY_RECEIVED) -> Envelope:
    """An envelope from a parsed JSON value: a (minimal) envelope with ``type``, or a bare
    payload (no ``type``), wrapped in a new event of ``bare_type``.

    Raises :class:`InvalidEvent` naming what is wrong, also when the envelope would be
    larger than a stage accepts (:data:`~ragbus.events.MAX_ENVELOPE_BYTES`).

    Parameters:
        value: the parsed JSON value.
        bare_type: the type of a bare payload (default ``query_received``).
    """
    if not isinstance(value, dict):
        raise InvalidEvent(f"expected a JSON object, got {json_type_name(value)}")
    if "type" not in value:
        value = {"type": bare_type, "payload": value}
    envelope = validate_envelope(value)
    size = len(envelope.encode())
    if size > MAX_ENVELOPE_BYTES:
        raise InvalidEvent(f"event is too large: {size} bytes (limit {MAX_ENVELOPE_BYTES})")
    return envelope


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
