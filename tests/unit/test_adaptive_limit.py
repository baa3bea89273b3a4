"""The adaptive concurrency limit, fed outcomes by hand (no I/O, no clock)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from ragbus.errors import TransientError
from ragbus.events import Envelope, new_event, utc_now
from ragbus.runtime.guards.adaptive import (
    AdaptiveConfig,
    AdaptiveLimit,
    AdaptiveLimitGuard,
    Gate,
    LimiterBoard,
    is_overload,
)
from ragbus.runtime.guards.deadline import EventExpired
from ragbus.runtime.metrics import Metrics
from ragbus.runtime.stage import Stage


async def answer(envelope: Envelope) -> list[Envelope]:
    return []


def busy_window(limit: AdaptiveLimit, latency_s: float, now: float = 0.0) -> None:
    """One window of successful calls with the dependency busy."""
    for _ in range(max(limit.current, 4)):
        limit.on_success(latency_s, limit.current, now)


def test_it_grows_while_latency_stays_at_its_baseline() -> None:
    limit = AdaptiveLimit(AdaptiveConfig(start=4, maximum=100))
    for _ in range(10):
        busy_window(limit, 0.1)
    assert limit.current > 30


def test_it_does_not_grow_while_the_dependency_is_idle() -> None:
    limit = AdaptiveLimit(AdaptiveConfig(start=10))
    for _ in range(50):
        limit.on_success(0.1, 1, 0.0)  # one call in flight of ten allowed
    assert limit.current == 10


def test_it_shrinks_when_latency_rises_past_the_tolerance() -> None:
    limit = AdaptiveLimit(AdaptiveConfig(start=40, maximum=100))
    busy_window(limit, 0.1)
    before = limit.current
    for _ in range(5):
        busy_window(limit, 0.5)  # five times the baseline: a queue in the LM
    assert limit.current < before * 0.6


def test_a_refusal_cuts_once_per_round_and_sets_a_ceiling() -> None:
    limit = AdaptiveLimit(AdaptiveConfig(start=20))
    sent = limit.cuts
    for _ in range(15):  # fifteen calls sent under the old limit all come back refused
        limit.on_refused(1.0, sent)
    assert limit.current == 18
    assert limit.ceiling == 19
    for _ in range(20):
        busy_window(limit, 0.1, now=2.0)
    assert limit.current == 19  # no higher than where it was refused


def test_the_ceiling_rises_after_a_quiet_probe_time() -> None:
    limit = AdaptiveLimit(AdaptiveConfig(start=20, probe_s=10))
    limit.on_refused(0.0, limit.cuts)
    for _ in range(10):
        busy_window(limit, 0.1, now=5.0)
    assert limit.current == 19
    busy_window(limit, 0.1, now=11.0)
    busy_window(limit, 0.1, now=11.5)
    assert limit.current == 20


def test_a_storm_of_refusals_brings_a_high_start_down_to_the_minimum_at_worst() -> None:
    limit = AdaptiveLimit(AdaptiveConfig(start=200, minimum=2))
    for second in range(100):
        limit.on_refused(float(second), limit.cuts)
    assert limit.current == 2


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="RAGBUS_LM_CONCURRENCY_MIN"):
        AdaptiveConfig(start=300, maximum=256)


@pytest.mark.parametrize(
    ("exc", "overload"),
    [
        (TransientError("429"), False),
        (TimeoutError(), True),
        (type("RateLimitError", (Exception,), {})(), True),
        (ValueError("bug"), False),
    ],
)
def test_what_counts_as_a_refusal(exc: Exception, overload: bool) -> None:
    assert is_overload(exc) is overload


async def test_the_gate_admits_up_to_the_limit_and_follows_it() -> None:
    limit = AdaptiveLimit(AdaptiveConfig(start=2))
    gate = Gate(limit)
    await gate.acquire()
    await gate.acquire()
    third = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    assert not third.done()
    gate.release()
    await asyncio.wait_for(third, 1)
    assert gate.in_flight == 2


def test_the_board_reports_and_exports_each_limit() -> None:
    metrics = Metrics()
    board = LimiterBoard({"lm": AdaptiveConfig(start=7)}, metrics)
    assert board.gate("retriever") is None
    assert board.gate("lm") is not None
    assert board.limits() == {"lm": 7}
    value = metrics.registry.get_sample_value("ragbus_concurrency_limit", {"dependency": "lm"})
    assert value == 7


async def test_a_call_waits_for_room_no_longer_than_its_deadline() -> None:
    board = LimiterBoard({"lm": AdaptiveConfig(start=1)})
    stage = Stage(name="generate", consumes=("q",), handler=answer, dependency="lm")
    gate = board.gate("lm")
    assert gate is not None
    await gate.acquire()  # the one place is taken
    event = new_event("q", {"question": "x"}, deadline=utc_now() + timedelta(seconds=0.1))
    with pytest.raises(EventExpired):
        await AdaptiveLimitGuard(board)(stage, event, answer)
    gate.release()
    assert await AdaptiveLimitGuard(board)(stage, new_event("q", {"question": "y"}), answer) == []


async def test_the_events_of_a_batch_stage_are_not_held_one_by_one() -> None:
    """A batch stage's events share one call per batch: a limit of one must not make its
    batches of one."""
    board = LimiterBoard({"lm": AdaptiveConfig(start=1)})
    stage = Stage(name="analyze", consumes=("q",), handler=answer, dependency="lm", batch_size=16)
    guard = AdaptiveLimitGuard(board)
    together = asyncio.Event()
    waiting = 0

    async def batched(envelope: Envelope) -> list[Envelope]:
        nonlocal waiting
        waiting += 1
        if waiting == 4:
            together.set()
        await together.wait()  # held until four events wait in the same batch
        return []

    events = [new_event("q", {"question": f"q{n}"}) for n in range(4)]
    results = await asyncio.wait_for(
        asyncio.gather(*(guard(stage, event, batched) for event in events)), 5
    )
    assert results == [[], [], [], []]
