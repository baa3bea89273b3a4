"""The event a log line is about, kept in a context variable while a stage handles it.

The consumer enters :func:`handling` around each event (with the stage's span, see
:func:`observe`); every record logged meanwhile, by ragbus or by a library it calls,
gets the event's fields as attributes through :class:`EventFieldsFilter`:
``correlation_id``, ``event_id``, ``event_type``, ``stage``, ``attempt``, ``worker_id``
and, once the consumer classified a failure, ``failure_class``; with tracing on also
``trace_id`` and ``span_id``. Context variables follow each asyncio task, so concurrent
events of one worker never mix their fields.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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

_fields: ContextVar[dict[str, Any] | None] = ContextVar("ragbus_event_fields", default=None)


def current() -> Mapping[str, Any]:
    """The fields of the event being handled in this task (empty outside one)."""
    return _fields.get() or {}


@contextmanager
def handling(stage: str, envelope: Envelope, worker_id: str) -> Iterator[None]:
    """Log lines written inside carry ``envelope``'s fields.

    Parameters:
        stage: the stage handling it.
        envelope: the event.
        worker_id: this worker's id (``RAGBUS_WORKER_ID``).
    """
    token = _fields.set(
        {
            "correlation_id": str(envelope.correlation),
            "event_id": str(envelope.id),
            "event_type": envelope.type,
            "stage": stage,
            "attempt": envelope.attempt,
            "worker_id": worker_id,
        }
    )
    try:
        yield
    finally:
        _fields.reset(token)


def note_failure(error: BaseException, failure_class: str) -> None:
    """Record how the event being handled failed: its log lines from here on carry
    ``failure_class``, and the stage's span is marked failed.

    Parameters:
        error: the exception.
        failure_class: its class (``permanent``, ``transient``, ``breaker_open``, ...).
    """
    fields = _fields.get()
    if fields is not None:
        fields["failure_class"] = failure_class
    tracing.failed(error, failure_class)


@contextmanager
def observe(
    stage: str,
    envelope: Envelope,
    worker_id: str,
    headers: Mapping[str, Any] | None = None,
) -> Iterator[None]:
    """Everything an operator follows one event by, around a stage's handling of it: the
    ``process <stage>`` span (:func:`ragbus.observability.tracing.processing`) and the
    log fields (:func:`handling`).

    Parameters:
        stage: the stage.
        envelope: the event.
        worker_id: this worker's id.
        headers: the message's transport headers, when the bus has any (default none).
    """
    with tracing.processing(stage, envelope, headers), handling(stage, envelope, worker_id):
        yield


class EventFieldsFilter(logging.Filter):
    """Adds the current event's fields (and trace ids, when tracing) to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _fields.get()
        if fields:
            for name, value in fields.items():
                if not hasattr(record, name):
                    setattr(record, name, value)
            ids = tracing.trace_ids()
            if ids is not None:
                record.trace_id, record.span_id = ids
        return True
