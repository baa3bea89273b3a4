"""``ragbus status`` on the memory bus without a gateway: the dead letters of the local
SQLite file, no workers, and where to look for the rest."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ragbus.bus.base import DeadLetter, DeadLetterReason
from ragbus.bus.memory import MemoryBus
from ragbus.pipelines.rag import STAGE_NAMES
from ragbus.status.model import NO_WORKERS, PipelineStatus
from tests.e2e.test_cli_environment import ragbus

pytestmark = pytest.mark.slow  # two commands, each a fresh process


async def seed(path: Path) -> None:
    store = MemoryBus(dlq_path=path).dead_letters(STAGE_NAMES)
    for reason in (DeadLetterReason.INVALID, DeadLetterReason.INVALID, DeadLetterReason.EXPIRED):
        await store.add(
            DeadLetter.from_body(
                b"{not json",
                stage="retrieve",
                reason=reason,
                error=ValueError("bad"),
                attempts=1,
                worker_id="w",
            )
        )


def test_status_on_the_memory_bus_shows_its_dead_letters_and_says_where_the_rest_is(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dlq.sqlite3"
    asyncio.run(seed(path))
    env = {"RAGBUS_DLQ_PATH": str(path)}
    as_json = ragbus("status", "--json", cwd=tmp_path, home=tmp_path, env=env)
    assert as_json.returncode == 0, as_json.stderr
    status = PipelineStatus.model_validate_json(as_json.stdout)
    assert status.bus == "memory" and status.workers == []
    retrieve = status.stage("retrieve")
    assert retrieve.state == NO_WORKERS and retrieve.queue_depth is None
    assert retrieve.dead_letters["invalid"] == 2 and retrieve.dead_letters["expired"] == 1
    assert sum(status.stage("generate").dead_letters.values()) == 0

    table = ragbus("status", cwd=tmp_path, home=tmp_path, env=env)
    assert table.returncode == 0, table.stderr
    [row] = [line for line in table.stdout.splitlines() if line.split()[:1] == ["retrieve"]]
    assert "no workers" in row and "invalid 2, expired 1" in row
    assert "workers: none heard from" in table.stdout
    assert "ragbus status --url" in " ".join(table.stdout.split())
