"""The event a log line is about, kept in a context variable while a stage handles it.

The consumer enters :class:`handling` around each event (with the stage's span, see
:class:`observe`); every record logged meanwhile, by ragbus or by a library it calls,
gets the event's fields as attributes through :class:`EventFieldsFilter`:
``correlation_id``, ``event_id``, ``event_type``, ``stage``, ``attempt``, ``worker_id``
and, once the consumer classified a failure, ``failure_class``; with tracing on also
``trace_id`` and ``span_id``. Context variables follow each asyncio task, so concurrent
events of one worker never mix their fields.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

from ragbus.observability import tracing

if TYPE_CHECKING:
    from ragbus.events import Envelope

#: The attributes :class:`EventFieldsFilter` may add to a record, in the order shown.
EVENT_FIELDS: Final = (
    "correlation_id",
    "event_id",
    "event_type",
    "stage",
    "attempt",
    "worker_id",
    "failure_class",
    "trace_id",
    "span_id",
)


class _Handling:
    """The event being handled in a task; its log fields are made when a line is
    logged, not for every event (most events log nothing)."""

    __slots__ = ("envelope", "failure_class", "stage", "worker_id")

    def __init__(self, stage: str, envelope: Envelope, worker_id: str) -> None:
        self.stage = stage
        self.envelope = envelope
        self.worker_id = worker_id
        self.failure_class: str | None = None

    def fields(self) -> dict[str, Any]:
        envelope = self.envelope
        fields: dict[str, Any] = {
            "correlation_id": str(envelope.correlation),
            "event_id": str(envelope.id),
            "event_type": envelope.type,
            "stage": self.stage,
            "attempt": envelope.attempt,
            "worker_id": self.worker_id,
        }
        if self.failure_class is not None:
            fields["failure_class"] = self.failure_class
        return fields


_handling: ContextVar[_Handling | None] = ContextVar("ragbus_event", default=None)


def current() -> Mapping[str, Any]:
    """The fields of the event being handled in this task (empty outside one)."""
    handling = _handling.get()
    return {} if handling is None else handling.fields()


class handling:
    """Log lines written inside carry ``envelope``'s fields.

    Parameters:
        stage: the stage handling it.
        envelope: the event.
        worker_id: this worker's id (``RAGBUS_WORKER_ID``).
    """

    __slots__ = ("_state", "_token")

    def __init__(self, stage: str, envelope: Envelope, worker_id: str) -> None:
        self._state = _Handling(stage, envelope, worker_id)

    def __enter__(self) -> None:
        self._token = _handling.set(self._state)

    def __exit__(self, *exc_info: object) -> None:
        _handling.reset(self._token)


def note_failure(error: BaseException, failure_class: str) -> None:
    """Record how the event being handled failed: its log lines from here on carry
    ``failure_class``, and the stage's span is marked failed.

    Parameters:
        error: the exception.
        failure_class: its class (``permanent``, ``transient``, ``breaker_open``, ...).
    """
    state = _handling.get()
    if state is not None:
        state.failure_class = failure_class
    tracing.failed(error, failure_class)


class observe:
    """Everything an operator follows one event by, around a stage's handling of it: the
    ``process <stage>`` span (:func:`ragbus.observability.tracing.processing`) and the
    log fields (:class:`handling`). A class rather than a generator: it wraps every
    event, and costs about a microsecond with tracing off.

    Parameters:
        stage: the stage.
        envelope: the event.
        worker_id: this worker's id.
        headers: the message's transport headers, when the bus has any (default none).
    """

    __slots__ = ("_handling", "_span")

    def __init__(
        self,
        stage: str,
        envelope: Envelope,
        worker_id: str,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        self._span = tracing.processing(stage, envelope, headers) if tracing.enabled() else None
        self._handling = handling(stage, envelope, worker_id)

    def __enter__(self) -> None:
        if self._span is not None:
            self._span.__enter__()
        self._handling.__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        self._handling.__exit__()
        if self._span is not None:
            self._span.__exit__(*exc_info)


class EventFieldsFilter(logging.Filter):
    """Adds the current event's fields (and trace ids, when tracing) to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        state = _handling.get()
        if state is not None:
            for name, value in state.fields().items():
                if not hasattr(record, name):
                    setattr(record, name, value)
            ids = tracing.trace_ids()
            if ids is not None:
                record.trace_id, record.span_id = ids
        return True
