"""The one owner of "which of a pipeline's stages run in this process, on which bus".

``ragbus worker``, the embedded client (and with it ``ragbus ask`` and the gateway on the
memory bus), memory-bus replay and the test harness all host stages through
:class:`Host`: it builds only the stages it serves (a generate-only worker never loads a
search index), declares the pipeline's sinks, and runs the stages behind their guards.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ragbus.bus.base import Bus, emitter
from ragbus.config import BusKind, Settings
from ragbus.heartbeat import HeartbeatSender
from ragbus.pipeline import Pipeline, StageContext, StageSpec
from ragbus.runtime.guards.chain import Middleware
from ragbus.runtime.metrics import Metrics
from ragbus.runtime.runner import Runtime
from ragbus.stage_build import build_stage
from ragbus.streaming import ChunkedEmit


def runs_embedded(settings: Settings) -> bool:
    """Whether a front door must run the pipeline's stages itself: on the memory bus
    there are no workers elsewhere; on RabbitMQ workers do the work."""
    return settings.bus is BusKind.MEMORY


class Host:
    """Runs some of a pipeline's stages in this process.

    Parameters:
        pipeline: the pipeline.
        bus: the bus to serve the stages on (connected before :meth:`attach`).
        settings: this process's settings (limits, guards, LM, corpus, ...).
        stages: the names of the stages to serve (default None: all of them); an unknown
            name is a ``ValueError`` naming the known ones.
        stream: let stages that stream (``streams=``) emit their transient events, for
            clients that follow them (default False: they publish only their outputs).
        metrics: the metrics to update (default: a private set).
        middleware: extra guards for every stage, between the outer and inner fixed
            guards (default none).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        bus: Bus,
        settings: Settings,
        *,
        stages: Iterable[str] | None = None,
        stream: bool = False,
        metrics: Metrics | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self.pipeline = pipeline
        self.bus = bus
        self.settings = settings
        self.specs: tuple[StageSpec, ...] = pipeline.select(stages)
        self.stream = stream
        self.metrics = metrics or Metrics()
        self.middleware = tuple(middleware)
        self.runtime: Runtime | None = None
        self.heartbeat: HeartbeatSender | None = None

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The stages this host serves."""
        return tuple(spec.name for spec in self.specs)

    def context(self, spec: StageSpec) -> StageContext:
        """What ``spec``'s factory builds with in this process."""
        emit = None
        if self.stream and spec.streams:
            emit = ChunkedEmit(emitter(self.bus), self.settings.stream_chunk_ms / 1000)
        return StageContext(pipeline=self.pipeline, stage=spec, settings=self.settings, emit=emit)

    async def attach(self) -> Runtime:
        """Declare the pipeline's sinks, build the served stages and subscribe them to
        the bus, without starting it (a client subscribes its own listener first); start
        the heartbeats (``RAGBUS_HEARTBEAT_INTERVAL_S``)."""
        for sink in self.pipeline.sinks.values():
            await self.bus.declare_sink(
                sink.name, sink.event_types, max_length=sink.max_length, ttl_s=sink.ttl_s
            )
        stages = [build_stage(spec, self.context(spec)) for spec in self.specs]
        self.runtime = Runtime(
            self.bus,
            stages,
            events=self.pipeline.events,
            settings=self.settings,
            metrics=self.metrics,
            middleware=self.middleware,
        )
        self.runtime.subscribe()
        if self.settings.heartbeat_interval_s > 0:
            self.heartbeat = HeartbeatSender(
                self.bus,
                self.runtime,
                app=self.pipeline.name,
                worker_id=self.settings.worker_id,
                interval_s=self.settings.heartbeat_interval_s,
            )
            self.heartbeat.start()
        return self.runtime

    async def start(self) -> Runtime:
        """:meth:`attach`, then start consuming."""
        runtime = await self.attach()
        await self.bus.start()
        return runtime

    async def stop(self, grace: float = 30.0) -> None:
        """Stop consuming; in-flight events get ``grace`` seconds (default 30) to finish."""
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        if self.runtime is not None:
            await self.runtime.stop(grace)
        else:
            await self.bus.stop(grace)
