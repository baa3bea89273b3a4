"""The status of a pipeline: one row per stage, merged from what each source knows.

Heartbeats (one per worker) bring what happens inside the workers: in flight,
processed per second, failures by class, breaker state, concurrency limit. The bus
brings queue depth and consumers; the dead-letter store brings dead letters by reason.
:func:`build_status` merges them without I/O, so the same rows come out of
``ragbus status`` on RabbitMQ and of the gateway's ``/v1/status``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, Field

from ragbus.bus.base import DeadLetterReason, QueueStats
from ragbus.control import WorkerHeartbeat
from ragbus.pipeline import Pipeline
from ragbus.runtime.classify import FailureClass

#: Breaker states from best to worst: a stage shows the worst of its workers.
BREAKER_ORDER: Final = ("closed", "half_open", "open")

#: What a stage is doing: every worker takes events, some are paused, all are paused
#: (their breaker is open), or no worker reported it.
RUNNING: Final = "running"
PARTLY_PAUSED: Final = "partly paused"
PAUSED: Final = "paused"
NO_WORKERS: Final = "no workers"


class WorkerSeen(BaseModel):
    """A worker that sent a heartbeat.

    Parameters:
        worker_id: its name.
        stages: the stages it serves.
        seconds_ago: age of its latest heartbeat.
    """

    worker_id: str
    stages: list[str]
    seconds_ago: float


class StageStatus(BaseModel):
    """One stage of the pipeline, across every worker serving it.

    Parameters:
        name: the stage.
        consumes: the event types (routing keys) it consumes.
        state: :data:`RUNNING`, :data:`PARTLY_PAUSED`, :data:`PAUSED` or
            :data:`NO_WORKERS`.
        queue_depth: events waiting in its queue (None: unknown).
        consumers: consumers on its queue (None: unknown).
        workers: the workers that reported it.
        in_flight: events being handled now.
        processed: events handled successfully, total over the workers' lifetimes.
        processed_per_s: events handled per second, over the workers' last interval.
        failed: handler failures by class, total.
        dependency: the dependency whose breaker it shares, if any.
        breaker: that breaker's worst state among the workers (None: no breaker).
        paused_workers: workers whose breaker keeps the stage paused.
        concurrency_limit: events the workers may handle at once, summed.
        dead_letters: dead letters by reason.
    """

    name: str
    consumes: list[str]
    state: str = NO_WORKERS
    queue_depth: int | None = None
    consumers: int | None = None
    workers: list[str] = Field(default_factory=list)
    in_flight: int = 0
    processed: int = 0
    processed_per_s: float = 0.0
    failed: dict[str, int] = Field(default_factory=lambda: {f.value: 0 for f in FailureClass})
    dependency: str | None = None
    breaker: str | None = None
    paused_workers: int = 0
    concurrency_limit: int = 0
    dead_letters: dict[str, int] = Field(
        default_factory=lambda: {r.value: 0 for r in DeadLetterReason}
    )


class PipelineStatus(BaseModel):
    """The whole pipeline (the JSON of ``ragbus status --json`` and ``/v1/status``).

    Parameters:
        app: the pipeline's name.
        bus: ``memory`` or ``rabbitmq``.
        collected_at: when it was put together (UTC).
        workers: the workers heard from.
        stages: one row per stage, in the pipeline's order.
    """

    app: str
    bus: str
    collected_at: datetime
    workers: list[WorkerSeen]
    stages: list[StageStatus]

    def stage(self, name: str) -> StageStatus:
        """The row of stage ``name`` (``KeyError`` if the pipeline has none)."""
        for row in self.stages:
            if row.name == name:
                return row
        raise KeyError(name)


def _worst(states: Iterable[str]) -> str | None:
    ranked = [state for state in states if state in BREAKER_ORDER]
    return max(ranked, key=BREAKER_ORDER.index) if ranked else None


def _stage_row(
    name: str,
    consumes: Iterable[str],
    reports: Sequence[tuple[str, Mapping[str, Any]]],
    queue: QueueStats | None,
    letters: Mapping[str, int],
) -> StageStatus:
    row = StageStatus(name=name, consumes=list(consumes))
    if queue is not None:
        row.queue_depth, row.consumers = queue.messages, queue.consumers
    for reason, count in letters.items():
        row.dead_letters[reason] = row.dead_letters.get(reason, 0) + count
    for worker_id, stats in reports:
        row.workers.append(worker_id)
        row.in_flight += int(stats.get("in_flight", 0))
        row.processed += int(stats.get("processed", 0))
        row.processed_per_s += float(stats.get("processed_per_s", 0.0))
        for failure, count in dict(stats.get("failed", {})).items():
            row.failed[failure] = row.failed.get(failure, 0) + int(count)
        row.concurrency_limit += int(stats.get("concurrency_limit", 0))
        row.paused_workers += bool(stats.get("paused"))
        row.dependency = stats.get("dependency") or row.dependency
    row.processed_per_s = round(row.processed_per_s, 2)
    row.breaker = _worst(str(stats.get("breaker")) for _, stats in reports)
    if not reports:
        row.state = NO_WORKERS
    elif row.paused_workers == len(reports):
        row.state = PAUSED
    elif row.paused_workers:
        row.state = PARTLY_PAUSED
    else:
        row.state = RUNNING
    return row


def build_status(
    pipeline: Pipeline,
    *,
    bus: str,
    heartbeats: Iterable[tuple[WorkerHeartbeat, float]],
    queues: Mapping[str, QueueStats | None],
    dead_letters: Mapping[str, Mapping[str, int]],
    now: datetime,
) -> PipelineStatus:
    """Merge what each source knows into one row per stage of ``pipeline``.

    Parameters:
        pipeline: the pipeline; its stages give the rows, in order.
        bus: the bus's kind, shown as is.
        heartbeats: the latest heartbeat of each worker with its age in seconds; those
            of another app are left out.
        queues: per stage, its queue's statistics (None or absent: unknown).
        dead_letters: per stage, dead letters by reason.
        now: the time of the status.
    """
    beats = [(beat, age) for beat, age in heartbeats if beat.app == pipeline.name]
    rows = []
    for spec in pipeline.stages.values():
        reports = [
            (beat.worker_id, beat.stats[spec.name]) for beat, _ in beats if spec.name in beat.stats
        ]
        rows.append(
            _stage_row(
                spec.name,
                spec.consumes,
                reports,
                queues.get(spec.name),
                dead_letters.get(spec.name, {}),
            )
        )
    workers = [
        WorkerSeen(worker_id=beat.worker_id, stages=list(beat.stages), seconds_ago=round(age, 1))
        for beat, age in sorted(beats, key=lambda item: item[0].worker_id)
    ]
    return PipelineStatus(
        app=pipeline.name, bus=bus, collected_at=now, workers=workers, stages=rows
    )
