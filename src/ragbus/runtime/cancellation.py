"""Cancellation: stop the work of a question nobody waits for any more.

A front door whose caller gave up (an SSE stream or a WebSocket closed, ``Client.ask``
timed out or was cancelled, Ctrl-C in ``ragbus ask``) publishes a ``ragbus.cancel``
control event for the question's correlation id (:func:`cancel_request`). Every runtime
follows those events (:meth:`Cancellations.subscribe`, an ephemeral subscription) and
keeps the cancelled ids in a bounded set whose entries expire (:class:`ExpiringSet`):

- an event of a cancelled correlation that comes up later is acknowledged without
  running its handler, and counted in ``ragbus_cancelled{stage}``; it is not a failure
  and never reaches the dead-letter queue;
- a handler call in flight for it (an LM call, a retrieval) is cancelled at once, and
  its event is acknowledged and counted the same way.

Cancellation is best effort: control events are transient (a worker that was
disconnected when one was sent does not see it), so a question may still run to the
end; its answer then goes nowhere, as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final, NoReturn, TypeVar

from prometheus_client import Counter

from ragbus.bus.base import Bus, InboundMessage
from ragbus.control import CANCEL, CONTROL_EVENTS, CancelRequested
from ragbus.events import Envelope, InvalidEvent
from ragbus.runtime.metrics import Metrics

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Cancelled correlation ids a runtime remembers at most (the oldest are forgotten).
MAX_CANCELLED: Final = 50_000

#: Seconds a cancelled correlation id is remembered: longer than questions wait.
CANCELLED_TTL_S: Final = 600.0

#: Control events a runtime's cancellation listener takes at once.
LISTEN_CONCURRENCY: Final = 64


class RequestCancelled(Exception):
    """The event's request was cancelled: its work was skipped or stopped."""


class ExpiringSet:
    """A set of ids, each kept for ``ttl_s`` seconds, at most ``max_size`` of them (the
    oldest go first).

    Parameters:
        max_size: ids kept at most (default :data:`MAX_CANCELLED`).
        ttl_s: seconds each id is kept (default :data:`CANCELLED_TTL_S`).
        clock: the monotonic clock, in seconds (default ``time.monotonic``).
    """

    def __init__(
        self,
        *,
        max_size: int = MAX_CANCELLED,
        ttl_s: float = CANCELLED_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_size = max_size
        self.ttl_s = ttl_s
        self.clock = clock
        self._expiries: OrderedDict[uuid.UUID, float] = OrderedDict()

    def add(self, item: uuid.UUID) -> None:
        """Keep ``item`` for ``ttl_s`` seconds from now."""
        self._expiries.pop(item, None)
        self._expiries[item] = self.clock() + self.ttl_s
        self._prune()

    def __contains__(self, item: object) -> bool:
        expiry = self._expiries.get(item)  # type: ignore[call-overload]
        if expiry is None:
            return False
        if expiry <= self.clock():
            del self._expiries[item]  # type: ignore[arg-type]
            return False
        return True

    def __len__(self) -> int:
        self._prune()
        return len(self._expiries)

    def _prune(self) -> None:
        # insertion order is expiry order: every id gets the same time to live
        now = self.clock()
        while self._expiries and (
            len(self._expiries) > self.max_size or next(iter(self._expiries.values())) <= now
        ):
            self._expiries.popitem(last=False)


class Cancellations:
    """The cancelled requests one runtime knows of, and the handler calls it runs.

    Parameters:
        metrics: where ``ragbus_cancelled{stage}`` is registered.
        cancelled: the set of cancelled correlation ids (default: a new
            :class:`ExpiringSet`).
    """

    def __init__(self, metrics: Metrics, *, cancelled: ExpiringSet | None = None) -> None:
        self.cancelled = cancelled or ExpiringSet()
        self.counter = Counter(
            "ragbus_cancelled",
            "Events dropped or stopped because their request was cancelled",
            ["stage"],
            registry=metrics.registry,
        )
        self._running: dict[uuid.UUID, set[asyncio.Task[object]]] = {}
        self._group = f"ragbus-cancel-{uuid.uuid4().hex[:12]}"

    def subscribe(self, bus: Bus) -> None:
        """Follow ``ragbus.cancel`` events on ``bus`` (an ephemeral subscription)."""
        bus.subscribe(
            self._group, [CANCEL], self.on_message, concurrency=LISTEN_CONCURRENCY, ephemeral=True
        )

    async def on_message(self, message: InboundMessage) -> None:
        """Handle one control event: remember its correlation id and stop its work."""
        try:
            event = CONTROL_EVENTS.decode(message.body)
            request = event.payload_as(CancelRequested)
        except (InvalidEvent, ValueError) as exc:
            logger.warning("ignoring an invalid %s event: %s", CANCEL, exc)
            return
        self.cancel(request.correlation_id)

    def cancel(self, correlation: uuid.UUID) -> None:
        """Cancel the request ``correlation``: its queued events will be dropped, and its
        handler calls running now are cancelled."""
        self.cancelled.add(correlation)
        for task in list(self._running.get(correlation, ())):
            task.cancel()

    async def run(self, stage: str, envelope: Envelope, work: Awaitable[T]) -> T:
        """Await ``work`` (the handler chain of ``envelope``) unless its request is
        cancelled, before or while it runs.

        Parameters:
            stage: the stage, for the ``ragbus_cancelled`` counter.
            envelope: the event being handled.
            work: its handling.

        Raises:
            RequestCancelled: the request was cancelled; ``work`` did not run, or was
                cancelled. The event is done with: acknowledge it.
        """
        correlation = envelope.correlation
        if correlation in self.cancelled:
            if asyncio.iscoroutine(work):
                work.close()
            self._dropped(stage, envelope)
        task: asyncio.Task[T] = asyncio.ensure_future(work)
        running = self._running.setdefault(correlation, set())
        running.add(task)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if (current is not None and current.cancelling()) or correlation not in self.cancelled:
                raise  # the runtime is stopping, or the handler raised it: not ours
            self._dropped(stage, envelope)
        finally:
            running.discard(task)
            if not running:
                self._running.pop(correlation, None)

    def _dropped(self, stage: str, envelope: Envelope) -> NoReturn:
        self.counter.labels(stage).inc()
        logger.info(
            "stage %s: %s %s dropped: its request %s was cancelled",
            stage,
            envelope.type,
            envelope.id,
            envelope.correlation,
        )
        raise RequestCancelled(str(envelope.correlation))


def cancel_event(correlation: uuid.UUID, reason: str = "") -> Envelope:
    """The ``ragbus.cancel`` control event for the request ``correlation``.

    Parameters:
        correlation: the request's correlation id.
        reason: why, for logs (default "").
    """
    return CONTROL_EVENTS.new(
        CANCEL, CancelRequested(correlation_id=correlation, reason=reason[:200])
    )


async def cancel_request(bus: Bus, correlation: uuid.UUID, reason: str = "") -> None:
    """Tell every worker on ``bus`` that nobody waits for the request ``correlation``
    any more: a transient ``ragbus.cancel`` event, best effort, never raising.

    Parameters:
        bus: the bus the request was published on.
        correlation: the request's correlation id.
        reason: why, for logs (default "").
    """
    await bus.publish(cancel_event(correlation, reason), transient=True)
