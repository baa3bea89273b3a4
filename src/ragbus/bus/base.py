"""The bus interface: transport only. Backends: ``memory.py`` (asyncio), ``rabbitmq.py``.

A bus moves encoded envelopes between stages. A *stage* is a consumer group: it
subscribes a :data:`MessageHandler` to some event types; every event of those types
reaches the stage once, however many workers serve it, and several stages may
subscribe to the same type (fan-out).

The handler contract:

- the handler returns normally -> the bus acknowledges the message (the handler has
  already published its outputs, retried it, or dead-lettered it);
- the handler raises :class:`Requeue` -> the message goes back to the stage's queue
  unharmed, and its delivery is not counted (a breaker is open);
- the handler raises anything else -> the delivery failed; the bus redelivers it
  (RabbitMQ counts it towards the queue's delivery limit).
"""

from __future__ import annotations

import abc
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from ragbus.events import Envelope, utc_now
from ragbus.json_input import MalformedJSON, parse_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One delivery to a stage.

    Parameters:
        body: the raw message body (envelope JSON, possibly invalid).
        stage: the stage (consumer group) receiving it.
        redelivered: whether the broker delivered it before (default False).
        delivery_count: deliveries so far according to the broker, when known (default 1).
    """

    body: bytes
    stage: str
    redelivered: bool = False
    delivery_count: int = 1


MessageHandler = Callable[[InboundMessage], Awaitable[None]]


class Requeue(Exception):
    """Raised by a handler to put its message back unharmed, without counting an attempt."""


class DeadLetterReason(StrEnum):
    """Why an event was dead-lettered."""

    INVALID = "invalid"
    FAILED = "failed"
    EXPIRED = "expired"
    DELIVERY_LIMIT = "delivery_limit"


class DeadLetter(BaseModel):
    """A failed event with its failure record. The envelope is kept untouched.

    ``envelope`` holds the original event when it could be decoded; ``raw`` holds the
    original body text when it could not (reason ``invalid``).
    """

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    stage: str
    reason: DeadLetterReason
    error_type: str = ""
    error_message: str = ""
    attempts: int = 1
    first_failed_at: datetime = Field(default_factory=utc_now)
    last_failed_at: datetime = Field(default_factory=utc_now)
    worker_id: str = ""
    envelope: dict[str, Any] | None = None
    raw: str | None = None

    @classmethod
    def from_body(
        cls,
        body: bytes,
        *,
        stage: str,
        reason: DeadLetterReason,
        error: BaseException | str,
        attempts: int = 1,
        worker_id: str = "",
    ) -> DeadLetter:
        """A dead letter for a raw message: the envelope kept as sent when it is a JSON
        object, else the body text in ``raw``.

        Parameters:
            body: the message body as received.
            stage, reason, attempts (default 1), worker_id (default ""): the record.
            error: the exception, or a message when there is none.
        """
        try:
            decoded = parse_json(body)
        except MalformedJSON:
            decoded = None
        is_object = isinstance(decoded, dict)
        return cls(
            stage=stage,
            reason=reason,
            error_type=type(error).__name__ if isinstance(error, BaseException) else "",
            error_message=str(error),
            attempts=attempts,
            worker_id=worker_id,
            envelope=decoded if is_object else None,
            raw=None if is_object else body.decode("utf-8", "replace"),
        )

    @property
    def event_id(self) -> str | None:
        """The dead event's id, when it could be decoded."""
        return None if self.envelope is None else str(self.envelope.get("id"))

    @property
    def correlation_id(self) -> str | None:
        """The dead event's correlation id, when it could be decoded."""
        return None if self.envelope is None else str(self.envelope.get("correlation_id"))

    @property
    def event_type(self) -> str | None:
        """The dead event's type, when it could be decoded."""
        return None if self.envelope is None else str(self.envelope.get("type"))


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters an operation applies to; ``None`` fields match everything.

    Parameters:
        stage, reason, error_type, correlation_id: exact matches.
        since, until: bounds on ``last_failed_at`` (inclusive).
        limit: at most this many, oldest first.
    """

    stage: str | None = None
    reason: DeadLetterReason | None = None
    error_type: str | None = None
    correlation_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None

    def matches(self, letter: DeadLetter) -> bool:
        """Whether ``letter`` passes every set field (``limit`` aside)."""
        return (
            (self.stage is None or letter.stage == self.stage)
            and (self.reason is None or letter.reason == self.reason)
            and (self.error_type is None or letter.error_type == self.error_type)
            and (self.correlation_id is None or letter.correlation_id == self.correlation_id)
            and (self.since is None or letter.last_failed_at >= self.since)
            and (self.until is None or letter.last_failed_at <= self.until)
        )


class Bus(abc.ABC):
    """A message bus carrying envelopes between stages.

    Lifecycle: ``connect()``, ``subscribe(...)`` for each stage this process serves,
    ``start()``, then ``stop()`` (graceful) and ``close()``. ``async with bus`` connects
    and closes.
    """

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection and declare what the bus needs."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consuming at once and release every resource."""

    @abc.abstractmethod
    def subscribe(
        self,
        stage: str,
        event_types: Sequence[str],
        handler: MessageHandler,
        *,
        concurrency: int,
        ephemeral: bool = False,
    ) -> None:
        """Serve ``stage``: deliver every event of ``event_types`` to ``handler``.

        Parameters:
            stage: the consumer group (queue) name.
            event_types: the event types the stage consumes.
            handler: called once per delivery; see the module's handler contract.
            concurrency: at most this many ``handler`` calls in flight in this process.
            ephemeral: the group lives only as long as this subscription (a client
                following answers), not a durable stage (default False).
        """

    @abc.abstractmethod
    async def declare(self, stage: str, event_types: Sequence[str]) -> None:
        """Make sure ``stage`` receives ``event_types`` even while nobody consumes it."""

    @abc.abstractmethod
    async def declare_sink(
        self,
        name: str,
        event_types: Sequence[str],
        *,
        max_length: int = 10_000,
        ttl_s: float = 3600,
    ) -> None:
        """Keep the latest events of ``event_types`` for consumers that come later (a
        pipeline's results), so the final events of a pipeline are always routable.

        Parameters:
            name: the sink's name (RabbitMQ: queue ``<prefix>.<name>``).
            event_types: the event types it keeps.
            max_length: events kept at most; the oldest go first (default 10,000).
            ttl_s: how long an event is kept, in seconds (default 3600).
        """

    @abc.abstractmethod
    async def start(self) -> None:
        """Start consuming for every subscribed stage."""

    @abc.abstractmethod
    async def stop(self, grace: float = 30.0) -> None:
        """Stop taking new deliveries and let in-flight handlers finish within ``grace``
        seconds (default 30); what is unfinished then is cancelled and redelivered."""

    @abc.abstractmethod
    async def publish(self, envelope: Envelope, *, stage: str | None = None) -> None:
        """Publish ``envelope`` and return once the bus has it safely (broker confirm).

        Parameters:
            envelope: the event.
            stage: deliver only to this stage's queue (retry, replay); default: every
                stage subscribed to the event type.
        """

    async def publish_transient(self, envelope: Envelope) -> None:
        """Publish an interim event (``answer_token``) at most once, best effort.

        Transient events are progress for whoever listens right now: they are not
        persisted, not confirmed as routed, dropped when nobody listens (or, on the memory
        bus, when a listener's queue is full), never retried and never dead-lettered. This
        method never raises, except ``asyncio.CancelledError``: a transient event must
        never fail the stage that sends it. It is the ``emit`` callback a handler gets
        (see :data:`ragbus.streaming.Emit`).

        The default publishes with :meth:`publish` and drops any failure; backends
        override it to skip persistence and routing checks.

        Parameters:
            envelope: the event.
        """
        try:
            await self.publish(envelope)
        except Exception as exc:
            logger.debug("transient %s %s dropped: %r", envelope.type, envelope.id, exc)

    @abc.abstractmethod
    async def publish_raw(self, body: bytes, event_type: str) -> None:
        """Publish an already-encoded body under ``event_type``, unvalidated (used for
        messages from other services and in tests of invalid input)."""

    @abc.abstractmethod
    async def publish_later(self, envelope: Envelope, *, stage: str, delay: float) -> None:
        """Deliver ``envelope`` to ``stage`` only, after ``delay`` seconds (delayed retry)."""

    @abc.abstractmethod
    async def dead_letter(self, letter: DeadLetter) -> None:
        """Store ``letter`` in its stage's dead-letter queue, safely, before returning."""

    @abc.abstractmethod
    async def list_dead_letters(self, where: DeadLetterFilter) -> list[DeadLetter]:
        """The dead letters matching ``where``, oldest first; changes nothing."""

    @abc.abstractmethod
    async def remove_dead_letters(self, ids: Sequence[uuid.UUID]) -> int:
        """Delete the dead letters with these ids; returns how many were removed."""

    async def pause(self, stage: str) -> None:  # noqa: B027 - optional hook
        """Stop taking new deliveries for ``stage`` (a breaker opened); default: no-op."""

    async def resume(self, stage: str) -> None:  # noqa: B027 - optional hook
        """Take deliveries for ``stage`` again; default: no-op."""

    @property
    def healthy(self) -> bool:
        """Connected, and every subscribed stage has a live consumer."""
        return True

    async def __aenter__(self) -> Bus:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
