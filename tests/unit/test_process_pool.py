"""The process pool's logic: restart delays, exit descriptions, and the pool's metrics
read while a process is still creating its file."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from ragbus.pool_metrics import PoolMetrics
from ragbus.process_pool import MAX_RESTART_DELAY_S, describe_exit, restart_delay


def test_the_restart_delay_doubles_while_a_process_dies_young_up_to_a_limit() -> None:
    assert [restart_delay(n) for n in range(1, 5)] == [0.5, 1.0, 2.0, 4.0]
    assert restart_delay(40) == MAX_RESTART_DELAY_S


@pytest.mark.parametrize(
    ("code", "said"),
    [(0, "exited with 0"), (3, "exited with 3"), (-signal.SIGKILL, "was killed by SIGKILL")],
)
def test_an_exit_is_described_in_words(code: int, said: str) -> None:
    assert describe_exit(code) == said


def test_a_metrics_file_being_created_is_left_out_of_the_sum(tmp_path: Path) -> None:
    (tmp_path / "counter_4242.db").write_bytes(b"")  # created, not yet sized
    metrics = PoolMetrics(tmp_path)
    assert metrics.render() == b""
    assert metrics.value("ragbus_worker_consuming") == 0
