"""The in-memory bus: stages as asyncio consumers in one process, no server.

Each stage has a bounded queue; a publisher waits while a stage's queue is full
(backpressure), for at most its budget (``queue_full_wait_s``, cut short by the event's
deadline; see :mod:`ragbus.bus.backpressure`), then fails with
:class:`~ragbus.errors.QueueFullError`, as on RabbitMQ. So memory stays flat however
much waits upstream. Dead letters go to a
SQLite file (:mod:`ragbus.bus.sqlite_dead_letters`) so ``ragbus dlq ...`` works on the
embedded default too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragbus.bus.backpressure import (
    DEFAULT_QUEUE_FULL_WAIT_S,
    DEFAULT_QUEUE_MAX_LENGTH,
    queue_full,
    wait_budget,
)
from ragbus.bus.base import (
    Bus,
    DeadLetter,
    DeadLetterReason,
    InboundMessage,
    MessageHandler,
    QueueStats,
    Requeue,
    check_publish_options,
)
from ragbus.bus.errors import UnroutableError
from ragbus.bus.sqlite_dead_letters import SqliteDeadLetterStore
from ragbus.events import Envelope
from ragbus.observability.tracing import publishing
from ragbus.runtime.redelivery import DELIVERY_LIMIT

logger = logging.getLogger(__name__)

#: Deliveries after which a message whose handler keeps crashing is dead-lettered
#: (the memory bus's counterpart of a quorum queue's delivery limit).
DEFAULT_DELIVERY_LIMIT = DELIVERY_LIMIT

#: Seconds a transient event waits for room in a full queue before it is dropped; a
#: queue that made one wait in vain gets no more waits until it has room again.
TRANSIENT_WAIT_S = 0.25


@dataclass(eq=False)
class _Stage:
    name: str
    event_types: tuple[str, ...]
    handler: MessageHandler
    concurrency: int
    queue: asyncio.Queue[InboundMessage]
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    #: the workers handling a message now
    in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    #: ``concurrency`` workers, each taking one message at a time (none when stopped)
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    congested: bool = False

    def __post_init__(self) -> None:
        self.resumed.set()

    @property
    def idle(self) -> bool:
        return self.queue.empty() and not self.in_flight


class MemoryBus(Bus):
    """A bus inside one asyncio event loop.

    Parameters:
        queue_max_length: bound of each stage's queue (default 1000).
        dlq_path: SQLite file for dead letters (default ``.ragbus/dlq.sqlite3``).
        delivery_limit: deliveries of a message whose handler raises before it is
            dead-lettered with reason ``delivery_limit`` (default 20).
        queue_full_wait_s: how long a publish waits for room in a full queue, in
            seconds, at most until the event's deadline; then
            :class:`~ragbus.errors.QueueFullError` (default 5). Retries and requeues
            the bus makes itself wait as long as it takes: they are already taken.
    """

    kind = "memory"

    def __init__(
        self,
        *,
        queue_max_length: int = DEFAULT_QUEUE_MAX_LENGTH,
        dlq_path: Path = Path(".ragbus/dlq.sqlite3"),
        delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
        queue_full_wait_s: float = DEFAULT_QUEUE_FULL_WAIT_S,
    ) -> None:
        if queue_max_length < 1:
            raise ValueError("queue_max_length must be at least 1")
        self.queue_max_length = queue_max_length
        self.queue_full_wait_s = queue_full_wait_s
        self.delivery_limit = delivery_limit
        self.dlq_path = dlq_path
        self._transient_dropped = 0
        self._stages: dict[str, _Stage] = {}
        self._routes: dict[str, list[_Stage]] = {}
        self._timers: set[asyncio.Task[None]] = set()
        self._sink_types: set[str] = set()
        self._started = False

    async def connect(self) -> None:
        """Nothing to connect to; present for the common lifecycle."""

    async def close(self) -> None:
        """Stop at once: cancel workers, in-flight handlers and pending retries."""
        await self.stop(grace=0)
        for timer in list(self._timers):
            timer.cancel()
        await asyncio.gather(*self._timers, return_exceptions=True)

    def subscribe(
        self,
        stage: str,
        event_types: Sequence[str],
        handler: MessageHandler,
        *,
        concurrency: int,
        ephemeral: bool = False,
    ) -> None:
        """Serve ``stage`` with ``handler``; see :meth:`Bus.subscribe`. In one process
        every stage is as ephemeral as the bus, so ``ephemeral`` changes nothing."""
        if stage in self._stages:
            raise ValueError(f"stage {stage!r} is already subscribed")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        entry = _Stage(
            name=stage,
            event_types=tuple(event_types),
            handler=handler,
            concurrency=concurrency,
            queue=asyncio.Queue(maxsize=self.queue_max_length),
        )
        self._stages[stage] = entry
        for event_type in entry.event_types:
            self._routes.setdefault(event_type, []).append(entry)
        if self._started:
            self._start_workers(entry)

    async def declare(self, stage: str, event_types: Sequence[str]) -> None:
        """No-op: in one process, a stage exists once it is subscribed."""

    async def declare_sink(
        self,
        name: str,
        event_types: Sequence[str],
        *,
        max_length: int = 10_000,
        ttl_s: float = 3600,
    ) -> None:
        """Make ``event_types`` routable with no consumer. In one process nobody can come
        later, so an event that no stage consumes is dropped instead of kept."""
        self._sink_types.update(event_types)

    async def start(self) -> None:
        """Start the workers of every subscribed stage."""
        self._started = True
        for entry in self._stages.values():
            if not entry.workers:
                self._start_workers(entry)

    def _start_workers(self, stage: _Stage) -> None:
        # long-lived workers, not a task per message: a delivery then costs no task,
        # context copy or callbacks, and ``concurrency`` bounds the stage by itself
        stage.workers = [
            asyncio.create_task(self._work(stage), name=f"ragbus:{stage.name}:{number}")
            for number in range(stage.concurrency)
        ]

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every queue is empty and no handler or delayed retry is running.

        Parameters:
            timeout: give up after this many seconds (default: wait as long as it takes);
                raises ``TimeoutError`` then.
        """
        async with asyncio.timeout(timeout):
            while True:
                if not self._timers and all(stage.idle for stage in self._stages.values()):
                    # Let handlers that just finished publish; then check once more.
                    await asyncio.sleep(0)
                    if not self._timers and all(s.idle for s in self._stages.values()):
                        return
                await asyncio.sleep(0.005)

    async def stop(self, grace: float = 30.0) -> None:
        """Stop taking deliveries; let in-flight handlers finish within ``grace`` seconds."""
        self._started = False  # a worker that finishes its message stops
        waiting = [
            worker
            for stage in self._stages.values()
            for worker in stage.workers
            if worker not in stage.in_flight
        ]
        for task in waiting:
            task.cancel()  # a message it was just given stays in the queue
        await asyncio.gather(*waiting, return_exceptions=True)
        for stage in self._stages.values():
            stage.workers = []
        in_flight = [task for s in self._stages.values() for task in s.in_flight]
        if in_flight:
            _, pending = (
                await asyncio.wait(in_flight, timeout=grace) if grace > 0 else ((), in_flight)
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def publish(
        self,
        envelope: Envelope,
        *,
        stage: str | None = None,
        delay: float | None = None,
        transient: bool = False,
    ) -> None:
        """Put ``envelope`` on the queue of each stage that consumes it (or of ``stage``
        only); waits while a queue is full, for at most ``queue_full_wait_s`` seconds or
        until the event's deadline, then raises :class:`~ragbus.errors.QueueFullError`
        (the queues that had room keep it: a stage may receive it again from a new
        publish and drops the copy by event id). See :meth:`Bus.publish` for the options.

        Parameters:
            envelope: the event.
            stage: only this stage's queue (default: every stage consuming the type).
            delay: put it there after this many seconds, by a timer task (default: now).
            transient: best effort, see :meth:`_offer` (default False).
        """
        check_publish_options(stage, delay, transient)
        if transient:
            try:
                await self._offer(envelope)
            except Exception as exc:  # a transient event must never fail its sender
                logger.debug("transient %s %s dropped: %r", envelope.type, envelope.id, exc)
            return
        with publishing(envelope, "ragbus-memory") as sent:
            if delay is not None:
                assert stage is not None  # checked above
                self._later(sent, stage, delay)
                return
            budget = wait_budget(sent, self.queue_full_wait_s)
            await self._enqueue(sent.encode(), sent.type, stage, budget=budget)

    async def queue_stats(self, stage: str) -> QueueStats | None:
        """``stage``'s queued events and its one in-process consumer, none while it is
        paused, as on RabbitMQ (None when the stage is not subscribed here)."""
        entry = self._stages.get(stage)
        if entry is None:
            return None
        return QueueStats(
            messages=entry.queue.qsize(), consumers=1 if entry.resumed.is_set() else 0
        )

    @property
    def transient_dropped(self) -> int:
        """Transient events dropped because a listener's queue was full, one per listener
        that missed one (events nobody listens to are not counted: nobody lost them)."""
        return self._transient_dropped

    async def _offer(self, envelope: Envelope) -> None:
        """Put a transient ``envelope`` on the queue of each stage that consumes it; with
        no such stage it is dropped. A full queue gets :data:`TRANSIENT_WAIT_S` seconds
        to make room (a busy listener catches up), then the event is dropped and
        counted (:attr:`transient_dropped`), and so are the next ones for that queue
        until it has room again: a stuck listener never holds a stage up for long."""
        targets = self._routes.get(envelope.type)
        if not targets:
            return
        body = envelope.encode()
        for target in targets:
            message = InboundMessage(body=body, stage=target.name)
            try:
                target.queue.put_nowait(message)
            except asyncio.QueueFull:
                pass
            else:
                target.congested = False
                continue
            if not target.congested:
                try:
                    async with asyncio.timeout(TRANSIENT_WAIT_S):
                        await target.queue.put(message)
                    continue
                except TimeoutError:
                    target.congested = True
            self._transient_dropped += 1
            logger.debug("stage %s: queue full, transient %s dropped", target.name, envelope.id)

    async def inject(self, body: bytes, event_type: str) -> None:
        """Deliver an unvalidated ``body`` to the stages consuming ``event_type``, as a
        foreign producer's message would arrive (tests of invalid input). The memory
        bus's own: not part of :class:`Bus`.

        Parameters:
            body: the message body, as sent.
            event_type: the routing key it is sent under.
        """
        await self._enqueue(body, event_type, None, budget=self.queue_full_wait_s)

    async def _enqueue(
        self, body: bytes, event_type: str, stage: str | None, *, budget: float
    ) -> None:
        if stage is not None:
            if stage not in self._stages:
                raise UnroutableError(f"no stage {stage!r} on this bus")
            targets = [self._stages[stage]]
        else:
            targets = self._routes.get(event_type, [])
            if not targets and event_type not in self._sink_types:
                raise UnroutableError(f"no stage consumes events of type {event_type!r}")
        loop = asyncio.get_running_loop()
        ends = loop.time() + budget
        for target in targets:
            message = InboundMessage(body=body, stage=target.name)
            try:
                target.queue.put_nowait(message)
                continue
            except asyncio.QueueFull:
                pass
            try:
                async with asyncio.timeout_at(ends):
                    await target.queue.put(message)
            except TimeoutError:
                raise queue_full(f"the queue of stage {target.name!r}", budget) from None

    def _later(self, envelope: Envelope, stage: str, delay: float) -> None:
        """Deliver ``envelope`` to ``stage`` after ``delay`` seconds (a timer task)."""
        if stage not in self._stages:
            raise UnroutableError(f"no stage {stage!r} on this bus")

        target = self._stages[stage]

        async def deliver() -> None:
            await asyncio.sleep(delay)
            # already taken once: wait for room as long as it takes, never drop it
            await target.queue.put(InboundMessage(body=envelope.encode(), stage=stage))

        timer = asyncio.create_task(deliver(), name=f"ragbus:retry:{stage}")
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    def dead_letters(self, stages: Sequence[str]) -> SqliteDeadLetterStore:
        """The dead letters of ``stages`` in this bus's SQLite file (``dlq_path``)."""
        return SqliteDeadLetterStore(self.dlq_path, stages)

    async def pause(self, stage: str) -> None:
        """Stop handing ``stage`` new messages; its queue keeps them."""
        self._stages[stage].resumed.clear()

    async def resume(self, stage: str) -> None:
        """Hand ``stage`` messages again."""
        self._stages[stage].resumed.set()

    def queue_depth(self, stage: str) -> int:
        """Messages waiting for ``stage`` (for tests and metrics)."""
        return self._stages[stage].queue.qsize()

    async def _next_message(self, stage: _Stage) -> InboundMessage:
        await stage.resumed.wait()
        return await stage.queue.get()

    def _put_back(self, message: InboundMessage) -> None:
        """Return ``message`` to its stage's queue, in a task (the queue may be full)."""
        task = asyncio.create_task(self._stages[message.stage].queue.put(message))
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _work(self, stage: _Stage) -> None:
        """One worker of ``stage``: hands it one message after another until the bus
        stops (then it finishes the message it has)."""
        worker = asyncio.current_task()
        assert worker is not None
        while self._started:
            message = await self._next_message(stage)
            stage.in_flight.add(worker)
            try:
                await self._deliver(stage, message)
            except asyncio.CancelledError:
                if worker.cancelling():
                    raise  # the bus stops this worker
                # the handler's own (a future it awaited was cancelled): its delivery
                # failed, the worker goes on
                error = RuntimeError("the handler was cancelled")
                await self._redeliver(stage, message, error)
            finally:
                stage.in_flight.discard(worker)

    async def _deliver(self, stage: _Stage, message: InboundMessage) -> None:
        try:
            await stage.handler(message)
        except Requeue:
            self._put_back(message)
        except Exception as exc:
            await self._redeliver(stage, message, exc)

    async def _redeliver(self, stage: _Stage, message: InboundMessage, exc: Exception) -> None:
        if message.delivery_count >= self.delivery_limit:
            logger.error("stage %s: delivery limit reached, dead-lettering: %r", stage.name, exc)
            await self.dead_letters([stage.name]).add(
                DeadLetter.from_body(
                    message.body,
                    stage=stage.name,
                    reason=DeadLetterReason.DELIVERY_LIMIT,
                    error=exc,
                    attempts=message.delivery_count,
                )
            )
            return
        logger.warning("stage %s: delivery failed, redelivering: %r", stage.name, exc)
        self._put_back(
            InboundMessage(
                body=message.body,
                stage=stage.name,
                redelivered=True,
                delivery_count=message.delivery_count + 1,
            )
        )
