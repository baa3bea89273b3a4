"""Read events to publish from text: JSON values, JSON lines, envelopes or bare questions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ragbus.events import Envelope, InvalidEvent
from ragbus.pipeline import Pipeline


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


def to_envelope(value: Any, pipeline: Pipeline) -> Envelope:
    """An envelope of ``pipeline`` from a JSON value: a (minimal) envelope with ``type``,
    or a bare payload of the pipeline's entry event when it has exactly one (for RAG,
    ``{"question": "..."}`` is a ``query_received``).

    Parameters:
        value: the decoded JSON.
        pipeline: the pipeline whose event types it must be one of.
    """
    if not isinstance(value, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(value).__name__}")
    if "type" in value:
        return pipeline.events.validate(value)
    entry = pipeline.entry_events
    if len(entry) != 1:
        raise InvalidEvent(
            f'name the event type: an envelope {{"type": ..., "payload": ...}} '
            f"(pipeline {pipeline.name!r} takes {', '.join(entry) or 'no entry event'})"
        )
    return pipeline.events.validate({"type": entry[0], "payload": value})


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
