"""Put a pipeline's status together from the heartbeats, the bus and the dead letters."""

from __future__ import annotations

from collections import Counter

from ragbus.bus.base import Bus, DeadLetterFilter, QueueStats
from ragbus.events import utc_now
from ragbus.pipeline import Pipeline
from ragbus.status.board import HeartbeatBoard
from ragbus.status.model import PipelineStatus, build_status


async def dead_letter_counts(bus: Bus, pipeline: Pipeline) -> dict[str, dict[str, int]]:
    """Per stage of ``pipeline``, its dead letters by reason."""
    letters = await bus.dead_letters(pipeline.stage_names).select(DeadLetterFilter())
    counts: dict[str, Counter[str]] = {}
    for letter in letters:
        counts.setdefault(letter.stage, Counter())[letter.reason.value] += 1
    return {stage: dict(by_reason) for stage, by_reason in counts.items()}


async def collect_status(bus: Bus, pipeline: Pipeline, board: HeartbeatBoard) -> PipelineStatus:
    """The status of ``pipeline`` now.

    Parameters:
        bus: a connected bus: its queues and its dead-letter store.
        pipeline: the pipeline.
        board: the heartbeats heard so far.
    """
    queues: dict[str, QueueStats | None] = {
        name: await bus.queue_stats(name) for name in pipeline.stage_names
    }
    return build_status(
        pipeline,
        bus=bus.kind,
        heartbeats=board.current(),
        queues=queues,
        dead_letters=await dead_letter_counts(bus, pipeline),
        now=utc_now(),
    )
