"""Dead letters on RabbitMQ: the codec (a dead letter as a message, and back) and the
store (the per-stage DLQs of a pipeline's stages).

A dead letter on RabbitMQ is a message in ``<prefix>.<stage>.dlq`` whose body is the
original event, untouched, and whose headers carry the failure record
(``x-ragbus-*``). Messages the broker dead-lettered itself (a quorum queue's delivery
limit) carry ``x-death`` instead; :func:`decode_dead_letter` turns both into a
:class:`~ragbus.bus.base.DeadLetter`. A header that cannot be read (another client
wrote it, or it was damaged) never aborts a listing: the letter is listed with what
could be read, a stand-in for the rest, and a note saying so.

AMQP cannot browse a queue, so listing fetches every message of a DLQ unacknowledged on
a short-lived channel and closes it: the messages return to the DLQ (a quorum queue,
replicated like the stage queues; it may return them in another order and counts each
return in ``x-delivery-count``, which therefore says nothing about the failure and is
never read here). Removing does the same and acks the matches.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from aiormq.exceptions import ChannelNotFoundEntity

from ragbus.bus.base import DeadLetter, DeadLetterFilter, DeadLetterReason, DeadLetterStore
from ragbus.bus.rabbitmq.connection import BrokerConnection
from ragbus.bus.rabbitmq.publisher import Publisher, build_message
from ragbus.bus.rabbitmq.topology import Declarer, Topology
from ragbus.events import utc_now
from ragbus.json_input import MalformedJSON, parse_json

#: Namespace of the ids given to dead letters the broker made (delivery limit), so the
#: same message has the same id at every listing.
BROKER_DEAD_LETTER_NAMESPACE: Final = uuid.UUID("6f1c7a2e-4a53-5b0e-9a57-3c1d1c0b8e21")

#: Longest error message kept in a header (headers share the frame with the body).
MAX_ERROR_MESSAGE_CHARS: Final = 4000

#: How long a listing waits, after closing its channel, for the messages it returns to
#: be back in the DLQ, in seconds (a quorum queue takes them back after the close).
RETURN_WAIT_S: Final = 5.0

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


# -- the codec ---------------------------------------------------------------------------


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
    """The dead letter a DLQ message holds; never raises (see the module's docstring).

    Parameters:
        body: the message body (the original event).
        headers: the message headers (``x-ragbus-*``, or the broker's ``x-death``).
        stage: the stage whose DLQ the message is in (a letter always belongs to the
            DLQ it sits in, whatever its stage header says).
        message_id: the message's ``message_id`` property, if any.
        delivery_limit: the stage queue's delivery limit, for the attempts of a message
            the broker dead-lettered (it then had ``delivery_limit + 1`` deliveries).
    """
    fields = dict(headers or {})
    envelope, raw = _split_body(body, fields.get(BODY_HEADER))
    try:
        if ID_HEADER in fields:
            return _from_record(body, fields, envelope, raw, stage=stage, message_id=message_id)
        return _from_broker(
            body, fields, envelope, raw, stage=stage, message_id=message_id, limit=delivery_limit
        )
    except Exception as exc:  # a header of a kind no reader expected: list what we can
        return DeadLetter(
            id=derived_dead_letter_id(stage, message_id, body, "unreadable"),
            stage=stage,
            reason=DeadLetterReason.FAILED,
            envelope=envelope,
            raw=raw,
            notes=[f"the headers could not be read ({exc!r}); only the body is listed"],
        )


def derived_dead_letter_id(
    stage: str, message_id: str | None, body: bytes, detail: object = None
) -> uuid.UUID:
    """The stable id of a dead letter that carries no readable id of its own (the broker
    dead-lettered it, or its id header is damaged): derived from ``stage``, its
    ``message_id`` (without one, a hash of its body) and ``detail`` (for the broker's
    letters, the time in their ``x-death`` record, so the same event dead-lettered again
    later gets another id)."""
    key = message_id or "sha256:" + hashlib.sha256(body).hexdigest()
    when = detail.isoformat() if isinstance(detail, datetime) else _text(detail)
    return uuid.uuid5(BROKER_DEAD_LETTER_NAMESPACE, f"{stage}\x00{key}\x00{when}")


def _from_record(
    body: bytes,
    headers: Mapping[str, Any],
    envelope: dict[str, Any] | None,
    raw: str | None,
    *,
    stage: str,
    message_id: str | None,
) -> DeadLetter:
    """A dead letter from ragbus's ``x-ragbus-*`` headers, each read on its own."""
    notes: list[str] = []
    shown = _text(headers[ID_HEADER])
    try:
        letter_id = uuid.UUID(shown)
    except ValueError:
        letter_id = derived_dead_letter_id(stage, message_id, body, f"id:{shown}")
        notes.append(f"{ID_HEADER} {shown[:60]!r} is not a UUID; listed as {letter_id}")
    claimed = _text(headers.get(STAGE_HEADER, stage))
    if claimed != stage:
        notes.append(
            f"{STAGE_HEADER} says {claimed[:60]!r} but the message is in the DLQ of "
            f"{stage!r}; listed under {stage!r}"
        )
    reason_text = _text(headers.get(REASON_HEADER, DeadLetterReason.FAILED.value))
    try:
        reason = DeadLetterReason(reason_text)
    except ValueError:
        reason = DeadLetterReason.FAILED
        notes.append(f"{REASON_HEADER} {reason_text[:60]!r} is not a reason; listed as failed")
    attempts = _whole_number(headers.get(ATTEMPTS_HEADER, 1))
    if attempts is None or attempts < 1:
        notes.append(
            f"{ATTEMPTS_HEADER} {_text(headers.get(ATTEMPTS_HEADER))[:60]!r} is not a "
            "positive whole number; listed as 1"
        )
        attempts = 1
    first = _header_time(headers.get(FIRST_FAILED_HEADER))
    last = _header_time(headers.get(LAST_FAILED_HEADER))
    if first is None or last is None:
        unread = [
            name
            for name, value in ((FIRST_FAILED_HEADER, first), (LAST_FAILED_HEADER, last))
            if value is None
        ]
        known = first or last
        notes.append(
            f"{' and '.join(unread)} could not be read; listed as "
            + ("the other failure time" if known else "the time of listing")
        )
        first = first or known or utc_now()
        last = last or known or first
    return DeadLetter(
        id=letter_id,
        stage=stage,
        reason=reason,
        error_type=_text(headers.get(ERROR_TYPE_HEADER, "")),
        error_message=_text(headers.get(ERROR_MESSAGE_HEADER, "")),
        attempts=attempts,
        first_failed_at=first,
        last_failed_at=last,
        worker_id=_text(headers.get(WORKER_HEADER, "")),
        envelope=envelope,
        raw=raw,
        notes=notes,
    )


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
    """A dead letter the broker made (its ``x-death`` record)."""
    records = headers.get("x-death")
    deaths = [d for d in records if isinstance(d, Mapping)] if isinstance(records, list) else []
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
    failed_at = _header_time(when) or utc_now()
    if reason is DeadLetterReason.DELIVERY_LIMIT:
        # the stage queue dead-letters a message at its (limit + 1)th failed delivery;
        # the x-delivery-count it carries now is the DLQ's own count of listings
        attempts = limit + 1
        message = f"delivery limit exceeded in queue {queue!r} (the handler kept failing)"
    else:
        attempts = (_whole_number(chosen.get("count", 1)) or 1) if chosen else 1
        message = f"dead-lettered by the broker ({broker_reason or 'unknown reason'})"
    return DeadLetter(
        id=derived_dead_letter_id(stage, message_id, body, when),
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


def _whole_number(value: object) -> int | None:
    """An integer header (or its text), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(_text(value).strip())
    except ValueError:
        return None


def _header_time(value: object) -> datetime | None:
    """A header's time (ISO text, or an AMQP timestamp), timezone-aware UTC; None when
    absent or unreadable."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str | bytes | bytearray):
        try:
            parsed = datetime.fromisoformat(_text(value))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


# -- the store ---------------------------------------------------------------------------


class RabbitMQDeadLetters(DeadLetterStore):
    """The DLQs of a pipeline's stages on the broker.

    Parameters:
        connection: the bus's connection.
        topology: the DLQs' names and arguments, and the delivery limit.
        declarer: declares a stage's DLQ before the first dead letter goes to it.
        publisher: publishes dead letters (confirmed, persistent).
        stages: the pipeline's stage names (see :class:`DeadLetterStore`).
    """

    def __init__(
        self,
        connection: BrokerConnection,
        topology: Topology,
        declarer: Declarer,
        publisher: Publisher,
        stages: Sequence[str],
    ) -> None:
        super().__init__(stages)
        self.connection = connection
        self.topology = topology
        self.declarer = declarer
        self.publisher = publisher
        self._declared: set[str] = set()

    @property
    def location(self) -> str:
        """The broker's masked URL and the DLQs' names."""
        queues = ", ".join(self.topology.dead_letter_queue(stage) for stage in self.stages)
        return f"RabbitMQ {self.connection.masked_url}, queues {queues}"

    async def add(self, letter: DeadLetter) -> None:
        """Publish ``letter`` to ``<prefix>.<stage>.dlq`` (confirmed, persistent): the
        body is the original event, the headers the failure record."""
        self.check_stage(letter.stage)
        if letter.stage not in self._declared:
            await self.declarer.dead_letter_queue(letter.stage)
            self._declared.add(letter.stage)
        body, headers = encode_dead_letter(letter)
        envelope = letter.envelope or {}
        message = build_message(
            body,
            event_type=_text(envelope["type"]) if "type" in envelope else None,
            message_id=_text(envelope["id"]) if "id" in envelope else str(letter.id),
            correlation_id=(
                _text(envelope["correlation_id"]) if "correlation_id" in envelope else None
            ),
            headers=headers,
            content_type="application/json" if letter.envelope is not None else None,
        )
        await self.publisher.to_queue(self.topology.dead_letter_queue(letter.stage), message)

    async def select(self, where: DeadLetterFilter) -> list[DeadLetter]:
        """The dead letters matching ``where``, oldest first; changes nothing. Scans the
        DLQ of ``where.stage``, or of every stage of the store (a DLQ that was never
        declared holds nothing, and is not created)."""
        letters: list[DeadLetter] = []
        for stage in self.stages_matching(where):
            found, _ = await self._scan(stage, remove=frozenset())
            letters.extend(letter for letter in found if where.matches(letter))
        letters.sort(key=lambda letter: letter.last_failed_at)
        return letters if where.limit is None else letters[: where.limit]

    async def remove(self, ids: Sequence[uuid.UUID]) -> int:
        """Delete the dead letters with ``ids`` from the stages' DLQs; the others go back
        untouched. Returns how many were removed."""
        wanted = frozenset(ids)
        if not wanted:
            return 0
        removed = 0
        for stage in self.stages:
            _, count = await self._scan(stage, remove=wanted)
            removed += count
        return removed

    async def _scan(
        self, stage: str, *, remove: frozenset[uuid.UUID]
    ) -> tuple[list[DeadLetter], int]:
        """Fetch every message of ``stage``'s DLQ unacknowledged, ack those in ``remove``,
        and close the channel so the others return; wait until they are back, so that
        the next listing sees them. Returns (kept letters, removed)."""
        letters: list[DeadLetter] = []
        removed = 0
        name = self.topology.dead_letter_queue(stage)
        async with self.connection.channel() as channel:
            try:
                queue = await channel.declare_queue(name, passive=True)
            except ChannelNotFoundEntity:
                return [], 0
            for _ in range(queue.declaration_result.message_count or 0):
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                letter = decode_dead_letter(
                    message.body,
                    message.headers,
                    stage=stage,
                    message_id=message.message_id,
                    delivery_limit=self.topology.delivery_limit,
                )
                if letter.id in remove:
                    await message.ack()
                    removed += 1
                else:
                    letters.append(letter)
        if letters:
            await self._wait_returned(name, len(letters))
        return letters, removed

    async def _wait_returned(self, name: str, count: int) -> None:
        """Wait up to :data:`RETURN_WAIT_S` seconds until ``name`` holds at least
        ``count`` ready messages again (fewer stay if another listing takes them)."""
        deadline = time.monotonic() + RETURN_WAIT_S
        async with self.connection.channel() as channel:
            while True:
                queue = await channel.declare_queue(name, passive=True)
                if (queue.declaration_result.message_count or 0) >= count:
                    return
                if time.monotonic() >= deadline:
                    return
                await asyncio.sleep(0.01)  # the broker applies the returns on its own


__all__ = [
    "RabbitMQDeadLetters",
    "decode_dead_letter",
    "derived_dead_letter_id",
    "encode_dead_letter",
]
