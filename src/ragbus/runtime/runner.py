"""Serve built stages on a bus, each behind its consumer and guards."""

from __future__ import annotations

from collections.abc import Sequence

from ragbus.bus.base import Bus
from ragbus.config import Settings
from ragbus.events import EventRegistry
from ragbus.runtime.batching import Batcher
from ragbus.runtime.cancellation import Cancellations
from ragbus.runtime.consumer import StageConsumer
from ragbus.runtime.guards import Guards
from ragbus.runtime.guards.chain import Middleware
from ragbus.runtime.metrics import Metrics
from ragbus.runtime.stage import Stage


class Runtime:
    """Subscribes stages to a bus and owns their consumers and guards.

    Parameters:
        bus: the bus to consume from and publish to.
        stages: the stages this process serves.
        events: the event types of their pipeline (decoding, output versions).
        settings: guard configuration and worker id (default: ``Settings()``, read from
            the environment).
        metrics: shared metrics (default: a private set).
        middleware: extra guards of the pipeline or the user, placed between the fixed
            outer guards (decode ... coalescing) and the inner ones (retry ... timeout)
            (default none).
    """

    def __init__(
        self,
        bus: Bus,
        stages: Sequence[Stage],
        *,
        events: EventRegistry,
        settings: Settings | None = None,
        metrics: Metrics | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self.bus = bus
        self.stages = list(stages)
        self.events = events
        self.settings = settings or Settings()
        self.metrics = metrics or Metrics()
        self.guards = Guards.from_settings(self.settings, bus, self.metrics)
        self.cancellations = Cancellations(self.metrics)
        self.consumers = {
            stage.name: StageConsumer(
                stage,
                bus,
                events=events,
                metrics=self.metrics,
                middlewares=self.guards.middlewares(middleware),
                processed=self.guards.processed,
                worker_id=self.settings.worker_id,
                redelivery_delays=self.settings.redelivery_delays_s,
                cancellations=self.cancellations,
            )
            for stage in self.stages
        }

    def subscribe(self) -> None:
        """Subscribe every stage's consumer, and the listener of cancelled requests, to
        the bus (without starting it)."""
        self.cancellations.subscribe(self.bus)
        for stage in self.stages:
            self.bus.subscribe(
                stage.name,
                stage.consumes,
                self.consumers[stage.name],
                concurrency=stage.concurrency,
            )

    async def start(self) -> None:
        """Subscribe every stage and start consuming."""
        self.subscribe()
        await self.bus.start()

    async def stop(self, grace: float = 30.0) -> None:
        """Stop consuming; in-flight events get ``grace`` seconds (default 30) to finish;
        then release the guards' resources."""
        await self.bus.stop(grace)
        for stage in self.stages:
            if isinstance(stage.handler, Batcher):
                await stage.handler.close()
        await self.guards.close()
