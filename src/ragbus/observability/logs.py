"""Log lines as text or JSON, each carrying the event it is about.

``ragbus worker`` and ``ragbus serve`` take ``--log-format text|json`` (env
``RAGBUS_LOG_FORMAT``, default ``text``). Either way a line written while a stage handles
an event carries that event's fields (:mod:`ragbus.observability.event_context`):

- text: ``<time> <LEVEL> <logger>: <message> [correlation_id=... event_id=... stage=...
  attempt=... worker_id=...]``;
- json: one object per line (python-json-logger) with ``level``, ``logger``,
  ``message``, the event's fields, ``exc_info`` for an exception, any ``extra``, and
  ``time`` (ISO 8601, UTC).

Secrets stay out of both: :mod:`ragbus.config.redaction` filters each record, and the
JSON formatter redacts what it formats beyond the message (tracebacks, extra fields).
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any, Final

from pythonjsonlogger.json import JsonFormatter

from ragbus.config.redaction import protect, redact
from ragbus.observability.event_context import EVENT_FIELDS, EventFieldsFilter

#: The text format of a log line, before the event's fields.
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_EVENT_FILTER: Final = EventFieldsFilter()


class LogFormat(StrEnum):
    """How log lines are written."""

    TEXT = "text"
    JSON = "json"


class EventTextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT`, followed by the event's fields in brackets when the line is
    about an event."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = [
            f"{name}={value}" for name in EVENT_FIELDS if (value := getattr(record, name, None))
        ]
        return f"{line} [{' '.join(fields)}]" if fields else line


class RedactingJsonFormatter(JsonFormatter):
    """python-json-logger's formatter: ``level``, ``logger``, ``message``, the record's
    extra fields and ``time`` (ISO 8601, UTC). It formats tracebacks from the exception
    itself (not from the text the redacting filter cleaned), so it redacts them and
    every extra string."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",  # ISO 8601, UTC: what log pipelines parse without a pattern
        )

    def formatException(self, ei: Any) -> str:
        return redact(str(super().formatException(ei)))

    def formatStack(self, stack_info: str) -> str:
        return redact(str(super().formatStack(stack_info)))

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {
            key: redact(value) if isinstance(value, str) else value
            for key, value in log_data.items()
        }


def formatter(log_format: LogFormat) -> logging.Formatter:
    """The formatter of ``log_format``.

    Parameters:
        log_format: text or json.
    """
    return RedactingJsonFormatter() if log_format is LogFormat.JSON else EventTextFormatter()


def use_log_format(log_format: LogFormat | str) -> None:
    """Write this process's log lines (the root logger's handlers) in ``log_format``,
    each with the fields of the event it is about; keeps secrets redacted.

    Parameters:
        log_format: ``text`` or ``json``.
    """
    chosen = formatter(LogFormat(log_format))
    for handler in logging.getLogger().handlers:
        handler.setFormatter(chosen)
        if _EVENT_FILTER not in handler.filters:
            handler.addFilter(_EVENT_FILTER)
    protect(None)
