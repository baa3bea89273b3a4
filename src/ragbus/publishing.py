"""Read events to publish from text: JSON values, JSON lines, envelopes or bare payloads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ragbus.events import MAX_ENVELOPE_BYTES, Envelope, InvalidEvent
from ragbus.json_input import MalformedJSON, json_type_name, parse_json
from ragbus.pipeline import Pipeline


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


def to_envelope(value: Any, pipeline: Pipeline) -> Envelope:
    """An envelope of ``pipeline`` from a parsed JSON value: a (minimal) envelope with
    ``type``, or a bare payload of the pipeline's entry event when it has exactly one (for
    RAG, ``{"question": "..."}`` is a ``query_received``).

    Raises :class:`InvalidEvent` naming what is wrong, also when the envelope would be
    larger than a stage accepts (:data:`~ragbus.events.MAX_ENVELOPE_BYTES`).

    Parameters:
        value: the parsed JSON value.
        pipeline: the pipeline whose event types it must be one of.
    """
    if not isinstance(value, dict):
        raise InvalidEvent(f"expected a JSON object, got {json_type_name(value)}")
    if "type" not in value:
        entry = pipeline.entry_events
        if len(entry) != 1:
            raise InvalidEvent(
                f'name the event\'s type: an envelope {{"type": ..., "payload": ...}} '
                f"of one of {', '.join(entry) or 'no entry event'}"
            )
        value = {"type": entry[0], "payload": value}
    envelope = pipeline.events.validate(value)
    size = len(envelope.encode())
    if size > MAX_ENVELOPE_BYTES:
        raise InvalidEvent(f"event is too large: {size} bytes (limit {MAX_ENVELOPE_BYTES})")
    return envelope


def parse_events(text: str, pipeline: Pipeline) -> list[Envelope]:
    """All events in ``text`` for ``pipeline``; the first invalid one raises
    :class:`InvalidEvent` naming its position."""
    events = []
    for number, value in enumerate(iter_json_values(text), start=1):
        try:
            events.append(to_envelope(value, pipeline))
        except InvalidEvent as exc:
            raise InvalidEvent(f"event #{number}: {exc}") from None
    return events


__all__ = ["iter_json_values", "parse_events", "to_envelope"]
