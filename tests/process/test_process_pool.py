"""The supervisor behind ``ragbus worker --processes`` and ``ragbus serve --workers``, with
real child processes (small Python programs that drain on SIGTERM like a worker): a
killed child is restarted, SIGTERM drains every child, a fatal exit ends the pool, and a
child that will not stop is killed after the drain timeout."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from ragbus.process_pool import ProcessPool
from tests.polling import wait_until

#: A child: says it started (a file named after its pid), drains for ``DRAIN`` seconds
#: on SIGTERM (writing ``drained`` into its file), then exits 0; ``EXIT`` makes it exit
#: with that code at once instead.
CHILD = """
import os, signal, sys, time
folder, drain, code = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
mark = os.path.join(folder, str(os.getpid()))
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
open(mark, "w").write("started")
if code:
    sys.exit(code)
while not stopping:
    time.sleep(0.01)
time.sleep(drain)
open(mark, "w").write("drained")
"""


def pool(
    folder: Path, count: int, *, drain: float = 0.2, code: int = 0, drain_s: float = 5.0
) -> tuple[ProcessPool, list[int]]:
    """A pool of ``count`` children of :data:`CHILD` writing into ``folder``."""

    def command(number: int) -> Sequence[str]:
        return [sys.executable, "-c", CHILD, str(folder), str(drain), str(code)]

    exited: list[int] = []
    made = ProcessPool(
        command, count, lambda number: dict(os.environ), drain_s=drain_s, on_exit=exited.append
    )
    return made, exited


def started(folder: Path) -> set[int]:
    return {int(path.name) for path in folder.iterdir()}


async def test_a_killed_child_is_restarted_and_sigterm_drains_them_all(tmp_path: Path) -> None:
    children, exited = pool(tmp_path, 2)
    await children.start()
    await wait_until(lambda: len(started(tmp_path)) == 2, what="both children to start")
    victim, survivor = children.pids
    os.kill(victim, signal.SIGKILL)
    await wait_until(
        lambda: len(children.pids) == 2 and victim not in children.pids,
        what="the killed child to be replaced",
        timeout=10,
    )
    assert children.restarts == 1 and survivor in children.pids
    assert exited == [victim]  # its live metrics are dropped
    replacement = next(pid for pid in children.pids if pid != survivor)
    await wait_until(lambda: replacement in started(tmp_path), what="the new child to start")

    assert await children.drain() == 0
    for pid in (survivor, replacement):
        assert (tmp_path / str(pid)).read_text() == "drained"
    assert sorted(exited) == sorted([victim, survivor, replacement])


async def test_an_exit_a_restart_would_repeat_ends_the_pool_with_its_code(
    tmp_path: Path,
) -> None:
    children, _ = pool(tmp_path, 2, code=3)
    await children.start()
    async with asyncio.timeout(10):
        await children.wait(asyncio.Event())
    assert children.failure == 3
    assert await children.drain() == 3
    assert children.restarts == 0


@pytest.mark.slow
async def test_a_child_that_outlives_the_drain_timeout_is_killed(tmp_path: Path) -> None:
    children, _ = pool(tmp_path, 1, drain=30, drain_s=0.1)
    await children.start()
    await wait_until(lambda: len(started(tmp_path)) == 1, what="the child to start")
    async with asyncio.timeout(15):  # 0.1 s of drain, then the 5 s margin
        assert await children.drain() == 1
    [pid] = started(tmp_path)
    assert (tmp_path / str(pid)).read_text() == "started"
