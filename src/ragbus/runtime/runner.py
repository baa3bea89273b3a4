"""Serve a pipeline's stages on a bus, each behind its consumer and guards."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ragbus.bus.base import Bus
from ragbus.config import Settings
from ragbus.runtime.consumer import StageConsumer
from ragbus.runtime.guards import Guards
from ragbus.runtime.metrics import Metrics
from ragbus.runtime.stage import Stage


class Runtime:
    """Subscribes stages to a bus and owns their consumers and guards.

    Parameters:
        bus: the bus to consume from and publish to.
        stages: the stages this process serves.
        settings: guard configuration and worker id (default: ``Settings()``, read from
            the environment).
        metrics: shared metrics (default: a private set).
        sinks: sinks to declare on start, name -> event types, so the pipeline's final
            events are routable with no consumer (default none).
    """

    def __init__(
        self,
        bus: Bus,
        stages: Sequence[Stage],
        *,
        settings: Settings | None = None,
        metrics: Metrics | None = None,
        sinks: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.bus = bus
        self.stages = list(stages)
        self.sinks = dict(sinks or {})
        self.settings = settings or Settings()
        self.metrics = metrics or Metrics()
        self.guards = Guards.from_settings(self.settings, bus, self.metrics)
        self.consumers = {
            stage.name: StageConsumer(
                stage,
                bus,
                metrics=self.metrics,
                middlewares=self.guards.middlewares(),
                processed=self.guards.processed,
                worker_id=self.settings.worker_id,
                redelivery_delays=self.settings.redelivery_delays_s,
            )
            for stage in self.stages
        }

    def subscribe(self) -> None:
        """Subscribe every stage's consumer to the bus (without starting it)."""
        for stage in self.stages:
            self.bus.subscribe(
                stage.name,
                stage.consumes,
                self.consumers[stage.name],
                concurrency=stage.concurrency,
            )

    async def declare_sinks(self) -> None:
        """Declare the runtime's sinks on the bus."""
        for name, event_types in self.sinks.items():
            await self.bus.declare_sink(name, event_types)

    async def start(self) -> None:
        """Declare the sinks, subscribe every stage and start consuming."""
        await self.declare_sinks()
        self.subscribe()
        await self.bus.start()

    async def stop(self, grace: float = 30.0) -> None:
        """Stop consuming; in-flight events get ``grace`` seconds (default 30) to finish;
        then release the guards' resources."""
        await self.bus.stop(grace)
        await self.guards.close()
