"""The status view's logic: merging heartbeats, queues and dead letters; the board; the
table. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from ragbus.bus.base import InboundMessage, QueueStats
from ragbus.control import CONTROL_EVENTS, HEARTBEAT, WorkerHeartbeat
from ragbus.pipelines.rag import pipeline as rag
from ragbus.status.board import HeartbeatBoard
from ragbus.status.model import NO_WORKERS, PARTLY_PAUSED, PAUSED, RUNNING, build_status
from ragbus.status.table import status_view

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def stats(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "in_flight": 2,
        "processed": 10,
        "processed_per_s": 1.5,
        "failed": {"permanent": 1, "transient": 0, "breaker_open": 0},
        "concurrency_limit": 16,
        "dependency": "lm",
        "breaker": "closed",
        "paused": False,
    }
    values.update(changes)
    return values


def beat(worker: str, app: str = "rag", **per_stage: dict[str, Any]) -> WorkerHeartbeat:
    return WorkerHeartbeat(
        worker_id=worker, app=app, stages=list(per_stage), interval_s=1.0, stats=per_stage
    )


def test_rows_sum_the_workers_and_show_the_worst_breaker() -> None:
    status = build_status(
        rag,
        bus="rabbitmq",
        heartbeats=[
            (beat("a", generate=stats()), 0.2),
            (beat("b", generate=stats(breaker="open", paused=True, in_flight=0)), 0.4),
            (beat("other-app", app="analyzer", generate=stats()), 0.1),
        ],
        queues={"generate": QueueStats(messages=7, consumers=1), "retrieve": None},
        dead_letters={"generate": {"expired": 2}},
        now=NOW,
    )
    generate = status.stage("generate")
    assert generate.state == PARTLY_PAUSED and generate.paused_workers == 1
    assert generate.breaker == "open" and generate.dependency == "lm"
    assert (generate.in_flight, generate.processed, generate.processed_per_s) == (2, 20, 3.0)
    assert generate.failed == {"permanent": 2, "transient": 0, "breaker_open": 0}
    assert generate.concurrency_limit == 32
    assert (generate.queue_depth, generate.consumers) == (7, 1)
    assert generate.dead_letters["expired"] == 2 and generate.dead_letters["failed"] == 0
    assert generate.workers == ["a", "b"]
    retrieve = status.stage("retrieve")
    assert retrieve.state == NO_WORKERS and retrieve.queue_depth is None
    assert [w.worker_id for w in status.workers] == ["a", "b"], "the other app is left out"
    assert [row.name for row in status.stages] == list(rag.stage_names)


def test_a_stage_is_paused_only_when_every_worker_paused_it() -> None:
    paused = stats(breaker="open", paused=True)
    status = build_status(
        rag,
        bus="memory",
        heartbeats=[(beat("a", generate=paused, retrieve=stats(dependency=None)), 0.0)],
        queues={},
        dead_letters={},
        now=NOW,
    )
    assert status.stage("generate").state == PAUSED
    assert status.stage("retrieve").state == RUNNING


def test_the_json_round_trips_with_every_field() -> None:
    status = build_status(
        rag,
        bus="memory",
        heartbeats=[(beat("a", generate=stats()), 0)],
        queues={},
        dead_letters={},
        now=NOW,
    )
    data = status.model_dump(mode="json")
    assert set(data) == {"app", "bus", "collected_at", "workers", "stages"}
    assert set(data["stages"][0]) == {
        "name", "consumes", "state", "queue_depth", "consumers", "workers", "in_flight",
        "processed", "processed_per_s", "failed", "dependency", "breaker", "paused_workers",
        "concurrency_limit", "dead_letters",
    }  # fmt: skip
    assert type(status).model_validate_json(status.model_dump_json()) == status


async def test_the_board_keeps_the_latest_beat_of_each_worker_and_forgets_silent_ones() -> None:
    now = [100.0]
    board = HeartbeatBoard("rag", clock=lambda: now[0])

    async def deliver(heartbeat: WorkerHeartbeat) -> None:
        body = CONTROL_EVENTS.new(HEARTBEAT, heartbeat).encode()
        await board(InboundMessage(body=body, stage="status"))

    await deliver(beat("a", generate=stats(processed=1)))
    await deliver(beat("a", generate=stats(processed=2)))
    await deliver(beat("x", app="analyzer"))
    await board(InboundMessage(body=b"not json", stage="status"))
    [(latest, age)] = board.current()
    assert latest.stats["generate"]["processed"] == 2 and age == 0
    now[0] += 3.5  # more than three intervals of 1 s
    assert board.current() == []


def test_the_table_names_the_paused_stage_and_its_open_breaker() -> None:
    paused = stats(breaker="open", paused=True, failed={"transient": 4})
    status = build_status(
        rag,
        bus="rabbitmq",
        heartbeats=[(beat("w1", generate=paused), 0.5)],
        queues={"generate": QueueStats(messages=3, consumers=0)},
        dead_letters={"retrieve": {"invalid": 1}},
        now=NOW,
    )
    console = Console(width=160, record=True)
    console.print(status_view(status, note="a note"))
    text = console.export_text()
    [generate] = [line for line in text.splitlines() if line.split()[:1] == ["generate"]]
    assert "paused" in generate and "lm open" in generate and "transient 4" in generate
    [retrieve] = [line for line in text.splitlines() if line.split()[:1] == ["retrieve"]]
    assert "no workers" in retrieve and "invalid 1" in retrieve
    assert "workers: w1 (generate, 0s ago)" in text and "a note" in text
