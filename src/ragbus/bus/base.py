"""The bus interface: transport only. Backends: ``memory.py`` (asyncio) and the
``rabbitmq`` package; each has its dead-letter store (``sqlite_dead_letters.py``,
``rabbitmq/dead_letters.py``).

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
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from ragbus.bus.errors import UnknownStageError
from ragbus.bus.reasons import DeadLetterReason as DeadLetterReason  # still importable from here
from ragbus.events import Envelope, utc_now
from ragbus.json_input import MalformedJSON, parse_json


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One delivery to a stage.

    Parameters:
        body: the raw message body (envelope JSON, possibly invalid).
        stage: the stage (consumer group) receiving it.
        redelivered: whether the broker delivered it before (default False).
        delivery_count: deliveries so far according to the broker, when known (default 1).
        headers: the transport's message headers, when it has any (default none): a
            foreign producer's ``traceparent`` may come there.
    """

    body: bytes
    stage: str
    redelivered: bool = False
    delivery_count: int = 1
    headers: Mapping[str, Any] | None = None


MessageHandler = Callable[[InboundMessage], Awaitable[None]]


class Requeue(Exception):
    """Raised by a handler to put its message back unharmed, without counting an attempt."""


class DeadLetter(BaseModel):
    """A failed event with its failure record. The envelope is kept untouched.

    ``envelope`` holds the original event when it could be decoded; ``raw`` holds the
    original body text when it could not (reason ``invalid``). ``notes`` says what of a
    stored record could not be read and what is shown instead (a damaged header of a
    message in a RabbitMQ DLQ, a damaged row of the SQLite file); empty when all was read.
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
    notes: list[str] = Field(default_factory=list)

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


class DeadLetterStore(abc.ABC):
    """The dead letters of a pipeline's stages on one bus: one queue (or table) per stage.

    A store knows its stages from whoever opened it (the pipeline), never from what one
    process happened to declare, so every operation works the same from a fresh process.
    It never creates anything for a stage that is not one of them: :meth:`add` and a
    :meth:`select` naming such a stage raise :class:`~ragbus.bus.errors.UnknownStageError`.

    Parameters:
        stages: the pipeline's stage names (at least one; duplicates are ignored).
    """

    def __init__(self, stages: Sequence[str]) -> None:
        self.stages: tuple[str, ...] = tuple(dict.fromkeys(stages))
        if not self.stages:
            raise ValueError("a dead-letter store needs the pipeline's stages")

    def check_stage(self, stage: str) -> None:
        """Raise :class:`~ragbus.bus.errors.UnknownStageError` unless ``stage`` is one of
        the store's stages."""
        if stage not in self.stages:
            raise UnknownStageError(
                f"unknown stage {stage!r}: the pipeline's stages are {', '.join(self.stages)}"
            )

    def stages_matching(self, where: DeadLetterFilter) -> tuple[str, ...]:
        """The stages whose dead letters ``where`` may select (checked, see
        :meth:`check_stage`)."""
        if where.stage is None:
            return self.stages
        self.check_stage(where.stage)
        return (where.stage,)

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the dead letters are kept, for people (a file path, or the broker's
        masked URL and queue names)."""

    @abc.abstractmethod
    async def add(self, letter: DeadLetter) -> None:
        """Store ``letter`` in its stage's dead letters, durably, before returning.

        Parameters:
            letter: the dead letter; its stage must be one of the store's.
        """

    @abc.abstractmethod
    async def select(self, where: DeadLetterFilter) -> list[DeadLetter]:
        """The dead letters matching ``where``, oldest first; changes nothing. A damaged
        record never aborts a listing: it is listed with what could be read, and its
        ``notes`` say what could not.

        Parameters:
            where: the filter (``DeadLetterFilter()`` selects everything).
        """

    @abc.abstractmethod
    async def remove(self, ids: Sequence[uuid.UUID]) -> int:
        """Delete the dead letters with these ids; returns how many were removed.

        Parameters:
            ids: dead-letter ids (as :meth:`select` lists them); unknown ids are ignored.
        """


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What a stage's queue holds now.

    Parameters:
        messages: events waiting in it (ready, not yet delivered).
        consumers: consumers attached to it (RabbitMQ: across every worker).
    """

    messages: int
    consumers: int


def check_publish_options(stage: str | None, delay: float | None, transient: bool) -> None:
    """Raise ``ValueError`` for options of :meth:`Bus.publish` that do not go together: a
    delay without a stage, a negative delay, or a transient event with a stage or delay."""
    if transient and (stage is not None or delay is not None):
        raise ValueError("a transient event goes to whoever listens: no stage or delay")
    if delay is not None:
        if stage is None:
            raise ValueError("a delayed publish needs a stage: it redelivers to that stage only")
        if delay < 0:
            raise ValueError(f"delay must be at least 0 seconds, not {delay}")


class Bus(abc.ABC):
    """A message bus carrying envelopes between stages.

    Lifecycle: ``connect()``, ``subscribe(...)`` for each stage this process serves,
    ``start()``, then ``stop()`` (graceful) and ``close()``. ``async with bus`` connects
    and closes.
    """

    #: What the bus is, as ``RAGBUS_BUS`` spells it (``memory``, ``rabbitmq``).
    kind: ClassVar[str] = ""

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
    async def publish(
        self,
        envelope: Envelope,
        *,
        stage: str | None = None,
        delay: float | None = None,
        transient: bool = False,
    ) -> None:
        """Publish ``envelope``; return once the bus has it safely (broker confirm).

        Raises :class:`~ragbus.bus.errors.UnroutableError` when no queue takes it and
        :class:`~ragbus.bus.errors.PublishNotConfirmedError` when the broker did not
        confirm it (see :func:`check_publish_options` for options that do not combine).

        Parameters:
            envelope: the event.
            stage: deliver only to this stage's queue (a retry, a replay); default: every
                stage subscribed to the event type.
            delay: deliver after this many seconds, to ``stage`` only (a delayed
                redelivery; needs ``stage``); default: now.
            transient: an interim event (``answer_token``) for whoever listens right now:
                published at most once, best effort, not persisted, not confirmed as
                routed, dropped when nobody listens (or, on the memory bus, when a
                listener's queue is full), never retried or dead-lettered. A transient
                publish never raises, except ``asyncio.CancelledError``: it must never
                fail the stage that sends it (default False).
        """

    @abc.abstractmethod
    def dead_letters(self, stages: Sequence[str]) -> DeadLetterStore:
        """The dead-letter store of ``stages`` on this bus (use it once connected).

        Parameters:
            stages: the pipeline's stage names; the store lists, adds and removes the
                dead letters of these stages only.
        """

    async def pause(self, stage: str) -> None:  # noqa: B027 - optional hook
        """Stop taking new deliveries for ``stage`` (a breaker opened); default: no-op."""

    async def resume(self, stage: str) -> None:  # noqa: B027 - optional hook
        """Take deliveries for ``stage`` again; default: no-op."""

    async def queue_stats(self, stage: str) -> QueueStats | None:
        """What ``stage``'s queue holds now, or None when this bus cannot tell (the
        queue does not exist, or the bus keeps no queue for it); default None."""
        del stage
        return None

    @property
    def healthy(self) -> bool:
        """Connected, and every subscribed stage has a live consumer."""
        return True

    async def __aenter__(self) -> Bus:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def emitter(bus: Bus) -> Callable[[Envelope], Awaitable[None]]:
    """The ``emit`` callback a handler gets (:data:`ragbus.streaming.Emit`): publishes
    each event on ``bus`` as transient, best effort, never raising (see
    :meth:`Bus.publish`).

    Parameters:
        bus: the bus to publish on.
    """

    async def emit(envelope: Envelope) -> None:
        await bus.publish(envelope, transient=True)

    return emit
