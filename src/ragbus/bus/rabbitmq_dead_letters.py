"""Dead letters as RabbitMQ messages, and back.

A dead letter on RabbitMQ is a message in ``<prefix>.<stage>.dlq`` whose body is the
original event, untouched, and whose headers carry the failure record
(``x-ragbus-*``). Messages the broker dead-lettered itself (a quorum queue's delivery
limit) carry ``x-death`` instead; :func:`decode_dead_letter` turns both into a
:class:`~ragbus.bus.base.DeadLetter`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from ragbus.bus.base import DeadLetter, DeadLetterReason
from ragbus.events import utc_now
from ragbus.json_input import MalformedJSON, parse_json

#: Namespace of the ids given to dead letters the broker made (delivery limit), so the
#: same message has the same id at every listing.
BROKER_DEAD_LETTER_NAMESPACE: Final = uuid.UUID("6f1c7a2e-4a53-5b0e-9a57-3c1d1c0b8e21")

#: Longest error message kept in a header (headers share the frame with the body).
MAX_ERROR_MESSAGE_CHARS: Final = 4000

ID_HEADER: Final = "x-ragbus-dead-letter-id"
STAGE_HEADER: Final = "x-ragbus-stage"
REASON_HEADER: Final = "x-ragbus-reason"
ERROR_TYPE_HEADER: Final = "x-ragbus-error-type"
ERROR_MESSAGE_HEADER: Final = "x-ragbus-error-message"
ATTEMPTS_HEADER: Final = "x-ragbus-attempts"
FIRST_FAILED_HEADER: Final = "x-ragbus-first-failed-at"
LAST_FAILED_HEADER: Final = "x-ragbus-last-failed-at"
WORKER_HEADER: Final = "x-ragbus-worker-id"
BODY_HEADER: Final = "x-ragbus-body"

_BROKER_REASONS: Final = {
    "delivery_limit": DeadLetterReason.DELIVERY_LIMIT,
    "expired": DeadLetterReason.EXPIRED,
}


def encode_dead_letter(letter: DeadLetter) -> tuple[bytes, dict[str, Any]]:
    """The body (the original event as received) and headers (the record) of ``letter``."""
    if letter.envelope is not None:
        body = json.dumps(letter.envelope, separators=(",", ":"), ensure_ascii=False).encode()
        kind = "envelope"
    else:
        body = (letter.raw or "").encode()
        kind = "raw"
    headers: dict[str, Any] = {
        ID_HEADER: str(letter.id),
        STAGE_HEADER: letter.stage,
        REASON_HEADER: letter.reason.value,
        ERROR_TYPE_HEADER: letter.error_type,
        ERROR_MESSAGE_HEADER: letter.error_message[:MAX_ERROR_MESSAGE_CHARS],
        ATTEMPTS_HEADER: letter.attempts,
        FIRST_FAILED_HEADER: letter.first_failed_at.isoformat(),
        LAST_FAILED_HEADER: letter.last_failed_at.isoformat(),
        WORKER_HEADER: letter.worker_id,
        BODY_HEADER: kind,
    }
    return body, headers


def decode_dead_letter(
    body: bytes,
    headers: Mapping[str, Any] | None,
    *,
    stage: str,
    message_id: str | None,
    delivery_limit: int,
) -> DeadLetter:
    """The dead letter a DLQ message holds.

    Parameters:
        body: the message body (the original event).
        headers: the message headers (``x-ragbus-*``, or the broker's ``x-death``).
        stage: the stage whose DLQ the message is in.
        message_id: the message's ``message_id`` property, if any.
        delivery_limit: the stage queue's delivery limit, for the attempts of a message
            the broker dead-lettered (it then had ``delivery_limit + 1`` deliveries).
    """
    headers = dict(headers or {})
    envelope, raw = _split_body(body, headers.get(BODY_HEADER))
    if ID_HEADER in headers:
        return DeadLetter(
            id=uuid.UUID(_text(headers[ID_HEADER])),
            stage=_text(headers.get(STAGE_HEADER, stage)),
            reason=DeadLetterReason(_text(headers.get(REASON_HEADER, "failed"))),
            error_type=_text(headers.get(ERROR_TYPE_HEADER, "")),
            error_message=_text(headers.get(ERROR_MESSAGE_HEADER, "")),
            attempts=int(headers.get(ATTEMPTS_HEADER, 1)),
            first_failed_at=_time(headers.get(FIRST_FAILED_HEADER)),
            last_failed_at=_time(headers.get(LAST_FAILED_HEADER)),
            worker_id=_text(headers.get(WORKER_HEADER, "")),
            envelope=envelope,
            raw=raw,
        )
    return _from_broker(
        body, headers, envelope, raw, stage=stage, message_id=message_id, limit=delivery_limit
    )


def broker_dead_letter_id(
    stage: str, message_id: str | None, body: bytes, died_at: object = None
) -> uuid.UUID:
    """The stable id of a message the broker dead-lettered: derived from ``stage``, its
    ``message_id`` (without one, a hash of its body) and the time in its ``x-death``
    record (so the same event dead-lettered again later gets another id)."""
    key = message_id or "sha256:" + hashlib.sha256(body).hexdigest()
    when = died_at.isoformat() if isinstance(died_at, datetime) else _text(died_at)
    return uuid.uuid5(BROKER_DEAD_LETTER_NAMESPACE, f"{stage}\x00{key}\x00{when}")


def _from_broker(
    body: bytes,
    headers: Mapping[str, Any],
    envelope: dict[str, Any] | None,
    raw: str | None,
    *,
    stage: str,
    message_id: str | None,
    limit: int,
) -> DeadLetter:
    deaths = [death for death in headers.get("x-death") or [] if isinstance(death, Mapping)]
    chosen = next(
        (d for d in deaths if _text(d.get("reason", "")) == "delivery_limit"),
        deaths[0] if deaths else None,
    )
    broker_reason = _text(
        chosen.get("reason", "") if chosen else headers.get("x-first-death-reason", "")
    )
    reason = _BROKER_REASONS.get(broker_reason, DeadLetterReason.FAILED)
    queue = _text(chosen.get("queue", "")) if chosen else ""
    when = chosen.get("time") if chosen else None
    failed_at = _time(when)
    if reason is DeadLetterReason.DELIVERY_LIMIT:
        attempts = (
            int(headers["x-delivery-count"]) + 1 if "x-delivery-count" in headers else limit + 1
        )
        message = f"delivery limit exceeded in queue {queue!r} (the handler kept failing)"
    else:
        attempts = int(chosen.get("count", 1)) if chosen else 1
        message = f"dead-lettered by the broker ({broker_reason or 'unknown reason'})"
    return DeadLetter(
        id=broker_dead_letter_id(stage, message_id, body, when),
        stage=stage,
        reason=reason,
        error_type=f"broker:{broker_reason}" if broker_reason else "",
        error_message=message,
        attempts=max(1, attempts),
        first_failed_at=failed_at,
        last_failed_at=failed_at,
        worker_id="",
        envelope=envelope,
        raw=raw,
    )


def _split_body(body: bytes, kind: object) -> tuple[dict[str, Any] | None, str | None]:
    """(envelope, raw): the body as a JSON object when it is one (and not marked raw)."""
    text = body.decode("utf-8", "replace")
    if _text(kind) == "raw":
        return None, text
    try:
        decoded = parse_json(body)
    except MalformedJSON:
        return None, text
    return (decoded, None) if isinstance(decoded, dict) else (None, text)


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def _time(value: object) -> datetime:
    """A header's time (ISO text, or an AMQP timestamp), timezone-aware UTC; now if absent."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str | bytes | bytearray):
        try:
            parsed = datetime.fromisoformat(_text(value))
        except ValueError:
            return utc_now()
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return utc_now()
