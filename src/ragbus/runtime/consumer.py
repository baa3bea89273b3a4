"""The consumer of one stage: decode, guard, handle, publish, then let the bus ack.

This is the :data:`ragbus.bus.MessageHandler` the runtime subscribes for each stage.
Failures are decided once (:func:`ragbus.runtime.redelivery.decide`) and end in exactly
one place: a delayed redelivery, the dead-letter queue, or back in the queue (breaker
open).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from ragbus.bus.base import Bus, DeadLetter, DeadLetterReason, InboundMessage, Requeue
from ragbus.errors import PermanentError
from ragbus.events import Envelope, EventRegistry, InvalidEvent
from ragbus.observability.event_context import note_failure, observe
from ragbus.runtime.backpressure import publish_downstream
from ragbus.runtime.cancellation import Cancellations, RequestCancelled
from ragbus.runtime.classify import FailureClass
from ragbus.runtime.guards.chain import Middleware, build_chain
from ragbus.runtime.guards.deadline import EventExpired
from ragbus.runtime.guards.decode import decode_for
from ragbus.runtime.guards.dedup import ProcessedEvents
from ragbus.runtime.metrics import Metrics
from ragbus.runtime.redelivery import DELAY_TIERS, Outcome, decide
from ragbus.runtime.stage import Stage

logger = logging.getLogger(__name__)


class StageConsumer:
    """Runs one stage's handler for each delivery.

    Parameters:
        stage: the stage.
        bus: where outputs, retries and dead letters go.
        events: the pipeline's event types: what arrives is decoded and validated
            against them, and outputs get their registered schema version.
        metrics: the metrics to update (default: a private set).
        middlewares: guards around the handler, outermost first (default none).
        processed: the processed-event-id set; a redelivered event the stage already
            finished is dropped (default: no deduplication).
        worker_id: recorded in dead letters (default "").
        redelivery_delays: seconds before redelivery ``n + 1`` of an event whose delivery
            ``n`` failed, by ``n``; the last repeats (default :data:`DELAY_TIERS`).
        cancellations: the cancelled requests: their events are dropped and their
            handler calls stopped (default: no cancellation).
    """

    def __init__(
        self,
        stage: Stage,
        bus: Bus,
        *,
        events: EventRegistry,
        metrics: Metrics | None = None,
        middlewares: Sequence[Middleware] = (),
        processed: ProcessedEvents | None = None,
        worker_id: str = "",
        redelivery_delays: Sequence[float] = DELAY_TIERS,
        cancellations: Cancellations | None = None,
    ) -> None:
        self.stage = stage
        self.events = events
        self.processed = processed
        self.bus = bus
        self.dead_letters = bus.dead_letters([stage.name])
        self.metrics = metrics or Metrics()
        self.worker_id = worker_id
        self.redelivery_delays = tuple(redelivery_delays)
        self.cancellations = cancellations
        self._chain = build_chain(stage, middlewares)
        # label lookups cost more than the updates: bind this stage's series once
        self._in_flight = self.metrics.in_flight.labels(stage.name)
        self._processed = self.metrics.processed.labels(stage.name)
        self._latency = self.metrics.latency.labels(stage.name)
        # every series exists from the start, at 0, so dashboards see no gaps
        for failure in FailureClass:
            self.metrics.failed.labels(stage.name, failure.value)
        for reason in DeadLetterReason:
            self.metrics.dead_lettered.labels(stage.name, reason.value)
        for kind in ("in_process", "redelivery"):
            self.metrics.retried.labels(stage.name, kind)
        self.metrics.duplicates.labels(stage.name)

    async def __call__(self, message: InboundMessage) -> None:
        """Handle one delivery; returns when the message may be acknowledged."""
        try:
            envelope = decode_for(self.stage, self.events, message.body)
        except InvalidEvent as exc:
            logger.warning(
                "stage %s: invalid message dead-lettered: %s",
                self.stage.name,
                exc,
                extra={
                    "stage": self.stage.name,
                    "worker_id": self.worker_id,
                    "failure_class": FailureClass.PERMANENT.value,
                },
            )
            await self._dead_letter(
                message, DeadLetterReason.INVALID, exc, attempts=message.delivery_count
            )
            return
        with observe(self.stage.name, envelope, self.worker_id, message.headers):
            await self._handle(message, envelope)

    async def _handle(self, message: InboundMessage, envelope: Envelope) -> None:
        """Handle a decoded delivery: inside the event's span and log fields."""
        name = self.stage.name
        if self.processed is not None and await self.processed.seen(name, envelope.id):
            logger.info("stage %s: dropping duplicate %s", name, envelope.id)
            self.metrics.duplicates.labels(name).inc()
            return
        started = time.perf_counter()
        self._in_flight.inc()
        try:
            if self.cancellations is None:
                outputs = await self._chain(envelope)
            else:
                outputs = await self.cancellations.run(name, envelope, self._chain(envelope))
            await self._publish_all(outputs)
            if self.processed is not None:
                await self.processed.mark(name, envelope.id)
        except asyncio.CancelledError:
            raise
        except RequestCancelled:
            return  # nobody waits for it: acknowledged, counted, not a failure
        except EventExpired as exc:
            await self._dead_letter(
                message, DeadLetterReason.EXPIRED, exc, attempts=envelope.attempt
            )
        except Exception as exc:
            await self._on_failure(message, envelope, exc)
        else:
            self._processed.inc()
            self._latency.observe(time.perf_counter() - started)
        finally:
            self._in_flight.dec()

    async def _publish_all(self, outputs: Sequence[Envelope]) -> None:
        outputs = [self._checked(output) for output in outputs]
        if len(outputs) == 1:
            await publish_downstream(self.bus, outputs[0])
        elif outputs:
            await asyncio.gather(*(publish_downstream(self.bus, event) for event in outputs))

    def _checked(self, output: Envelope) -> Envelope:
        """``output`` with its type's registered version; a type the stage does not
        declare, or the pipeline does not know, is a permanent failure of the stage."""
        produces = self.stage.produces
        if produces is not None and output.type not in produces:
            raise PermanentError(
                f"stage {self.stage.name} produced {output.type!r}, which it does not "
                f"declare (produces: {', '.join(produces) or 'nothing'})"
            )
        try:
            version = self.events.spec(output.type).version
        except InvalidEvent as exc:
            raise PermanentError(f"stage {self.stage.name} produced {exc}") from None
        if output.version != version:
            output = output.model_copy(update={"version": version})
        return output

    async def _on_failure(
        self, message: InboundMessage, envelope: Envelope, exc: Exception
    ) -> None:
        decision = decide(
            envelope, exc, max_attempts=self.stage.max_attempts, tiers=self.redelivery_delays
        )
        note_failure(exc, decision.failure.value)
        self.metrics.failed.labels(self.stage.name, decision.failure.value).inc()
        if decision.outcome is Outcome.REQUEUE:
            raise Requeue(str(exc)) from exc
        if decision.outcome is Outcome.DEAD_LETTER:
            logger.warning(
                "stage %s: %s failure of %s after %d attempt(s), dead-lettering: %r",
                self.stage.name,
                decision.failure.value,
                envelope.id,
                envelope.attempt,
                exc,
            )
            await self._dead_letter(
                message, DeadLetterReason.FAILED, exc, attempts=envelope.attempt
            )
            return
        assert decision.retry is not None  # REDELIVER always carries the event
        logger.info(
            "stage %s: %s attempt %d failed (%r); redelivering in %.1fs",
            self.stage.name,
            envelope.id,
            envelope.attempt,
            exc,
            decision.delay_s,
        )
        self.metrics.retried.labels(self.stage.name, "redelivery").inc()
        await self.bus.publish(decision.retry, stage=self.stage.name, delay=decision.delay_s)

    async def _dead_letter(
        self,
        message: InboundMessage,
        reason: DeadLetterReason,
        exc: BaseException,
        *,
        attempts: int,
    ) -> None:
        """Dead-letter ``message`` with its body as received (the envelope untouched)."""
        letter = DeadLetter.from_body(
            message.body,
            stage=self.stage.name,
            reason=reason,
            error=exc,
            attempts=attempts,
            worker_id=self.worker_id,
        )
        await self.dead_letters.add(letter)
        self.metrics.dead_lettered.labels(self.stage.name, reason.value).inc()
