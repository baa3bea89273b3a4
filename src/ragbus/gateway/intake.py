"""What ``POST /v1/events`` accepts from outside, and what the gateway decides itself.

A caller of the gateway is not a stage: it may start work, never pose as a step of
someone else's. So by default only a pipeline's entry events are accepted (for the RAG
pipeline, ``query_received``), and whatever the caller sends, the gateway itself sets
the fields that route, deduplicate and count an event: a fresh ``id`` and
``correlation_id`` (a caller cannot answer, or cancel by duplicate, another client's
question), ``causation_id`` none, ``attempt`` 1, ``replays`` 0, ``created_at`` now, and a
``deadline`` no later than ``RAGBUS_GATEWAY_MAX_TIMEOUT_S`` from now.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from ragbus.events import Envelope, InvalidEvent, utc_now
from ragbus.gateway.errors import RequestError
from ragbus.pipeline import Pipeline
from ragbus.publishing import to_envelope


class EventIntake:
    """Turns the JSON body of ``POST /v1/events`` into the event the gateway publishes.

    Parameters:
        pipeline: the pipeline; its entry event types are always accepted, and a body
            without ``type`` is a bare payload of the entry type when there is exactly
            one.
        extra_types: other types accepted (``RAGBUS_GATEWAY_EVENT_TYPES``; default none).
            They are stamped the same way: they start a new correlation too.
        max_deadline_s: the latest deadline, in seconds from now
            (``RAGBUS_GATEWAY_MAX_TIMEOUT_S``); also the deadline of an event without one.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        extra_types: Iterable[str] = (),
        max_deadline_s: float,
    ) -> None:
        self.pipeline = pipeline
        self.entry_types = frozenset(pipeline.entry_events)
        if not self.entry_types:
            raise ValueError(f"pipeline {pipeline.name!r} has no entry event type")
        self.accepted = self.entry_types | frozenset(extra_types)
        self.max_deadline = timedelta(seconds=max_deadline_s)

    def admit(self, data: Any, *, now: datetime | None = None) -> Envelope:
        """The event to publish for the parsed body ``data``.

        Raises :class:`RequestError`: 422 (``invalid_event``) for an invalid event or a
        deadline that has passed, 403 (``event_type_not_allowed``) for a valid event of a
        type this gateway does not accept.

        Parameters:
            data: the parsed JSON body.
            now: the current time (default: now, UTC).
        """
        now = now or utc_now()
        try:
            envelope = to_envelope(data, self.pipeline)
        except InvalidEvent as exc:
            raise RequestError(422, "invalid_event", str(exc)) from None
        if envelope.type not in self.accepted:
            raise RequestError(
                403,
                "event_type_not_allowed",
                f"this gateway accepts only {self._accepted()} events; other types come "
                "from the pipeline's own stages (an operator may allow more with "
                "RAGBUS_GATEWAY_EVENT_TYPES)",
            )
        latest = now + self.max_deadline
        deadline = envelope.deadline
        if deadline is not None and deadline <= now:
            raise RequestError(
                422, "invalid_event", f"deadline: {deadline.isoformat()} has already passed"
            )
        event_id = uuid.uuid4()
        return envelope.model_copy(
            update={
                "id": event_id,
                "correlation_id": event_id,
                "causation_id": None,
                "attempt": 1,
                "replays": 0,
                "created_at": now,
                "deadline": latest if deadline is None else min(deadline, latest),
            }
        )

    def _accepted(self) -> str:
        return ", ".join(sorted(self.accepted))
