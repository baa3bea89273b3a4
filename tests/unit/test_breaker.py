"""The circuit breaker's state machine, on its own, with a fake clock."""

from __future__ import annotations

import pytest

from ragbus.runtime.circuit import BreakerConfig, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(
    **config: object,
) -> tuple[CircuitBreaker, Clock, list[tuple[BreakerState, BreakerState]]]:
    clock = Clock()
    instance = CircuitBreaker("lm", BreakerConfig(**config), clock=clock)  # type: ignore[arg-type]
    changes: list[tuple[BreakerState, BreakerState]] = []
    instance.listeners.append(lambda name, old, new: changes.append((old, new)))
    return instance, clock, changes


def calls(instance: CircuitBreaker, *, failed: bool, count: int, duration: float = 0.01) -> None:
    for _ in range(count):
        assert instance.try_acquire()
        instance.record(failed=failed, duration_s=duration)


def test_stays_closed_below_minimum_calls() -> None:
    instance, _, _ = breaker(minimum_calls=5, window_size=10)
    calls(instance, failed=True, count=4)
    assert instance.state is BreakerState.CLOSED


def test_opens_at_failure_rate_threshold() -> None:
    instance, _, changes = breaker(minimum_calls=4, window_size=4, failure_rate_threshold=50)
    calls(instance, failed=False, count=2)
    calls(instance, failed=True, count=1)
    assert instance.state is BreakerState.CLOSED
    calls(instance, failed=True, count=1)
    assert instance.state is BreakerState.OPEN
    assert changes == [(BreakerState.CLOSED, BreakerState.OPEN)]
    assert not instance.try_acquire()


def test_count_window_forgets_old_calls() -> None:
    instance, _, _ = breaker(minimum_calls=4, window_size=4, failure_rate_threshold=75)
    calls(instance, failed=True, count=2)
    calls(instance, failed=False, count=4)  # pushes the failures out
    calls(instance, failed=True, count=2)
    assert instance.state is BreakerState.CLOSED


def test_time_window_forgets_old_calls() -> None:
    instance, clock, _ = breaker(
        window_type="time", window_size=10, minimum_calls=3, failure_rate_threshold=60
    )
    calls(instance, failed=True, count=2)
    clock.now += 11
    calls(instance, failed=True, count=1)
    calls(instance, failed=False, count=1)
    assert instance.state is BreakerState.CLOSED  # 1 of 2 recent calls failed
    calls(instance, failed=True, count=1)
    assert instance.state is BreakerState.OPEN  # 2 of 3


def test_a_success_can_open_a_time_window_whose_old_successes_left_it() -> None:
    instance, clock, _ = breaker(
        window_type="time", window_size=10, minimum_calls=3, failure_rate_threshold=50
    )
    calls(instance, failed=False, count=6)
    clock.now += 5
    calls(instance, failed=True, count=3)
    assert instance.state is BreakerState.CLOSED  # 3 of 9 failed
    clock.now += 6  # the six successes leave the window
    calls(instance, failed=False, count=1)
    assert instance.state is BreakerState.OPEN  # 3 of 4


def test_reopening_starts_from_an_empty_window() -> None:
    instance, clock, _ = breaker(
        minimum_calls=2, window_size=4, open_wait_s=1, half_open_calls=1, failure_rate_threshold=60
    )
    calls(instance, failed=True, count=2)
    assert instance.state is BreakerState.OPEN
    clock.now += 1
    calls(instance, failed=False, count=1)  # the probe closes it
    assert instance.state is BreakerState.CLOSED
    calls(instance, failed=False, count=1)
    calls(instance, failed=True, count=1)
    assert instance.state is BreakerState.CLOSED  # 1 of 2: the failures before count no more
    calls(instance, failed=True, count=1)
    assert instance.state is BreakerState.OPEN  # 2 of 3


def test_opens_at_slow_call_rate() -> None:
    instance, _, _ = breaker(
        minimum_calls=3, window_size=3, slow_call_duration_s=1.0, slow_call_rate_threshold=100
    )
    calls(instance, failed=False, count=2, duration=2.0)
    assert instance.state is BreakerState.CLOSED
    calls(instance, failed=False, count=1, duration=5.0)
    assert instance.state is BreakerState.OPEN


def test_half_opens_after_the_wait_with_limited_probes() -> None:
    instance, clock, _ = breaker(minimum_calls=2, window_size=2, open_wait_s=5, half_open_calls=2)
    calls(instance, failed=True, count=2)
    clock.now += 4.9
    assert instance.state is BreakerState.OPEN
    assert instance.seconds_until_half_open == pytest.approx(0.1)
    clock.now += 0.1
    assert instance.state is BreakerState.HALF_OPEN
    assert instance.try_acquire()
    assert instance.try_acquire()
    assert not instance.try_acquire()  # only two probes


def test_successful_probes_close_it() -> None:
    instance, clock, changes = breaker(
        minimum_calls=2, window_size=2, open_wait_s=1, half_open_calls=2
    )
    calls(instance, failed=True, count=2)
    clock.now += 1
    calls(instance, failed=False, count=2)
    assert instance.state is BreakerState.CLOSED
    assert changes == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    calls(instance, failed=True, count=1)
    assert instance.state is BreakerState.CLOSED  # the window restarted empty


def test_a_failed_probe_opens_it_again() -> None:
    instance, clock, _ = breaker(minimum_calls=2, window_size=2, open_wait_s=1, half_open_calls=3)
    calls(instance, failed=True, count=2)
    clock.now += 1
    assert instance.try_acquire()
    instance.record(failed=True, duration_s=0.1)
    assert instance.state is BreakerState.OPEN
    clock.now += 0.5
    assert not instance.try_acquire()


def test_released_probe_permit_can_be_used_again() -> None:
    instance, clock, _ = breaker(minimum_calls=1, window_size=1, open_wait_s=1, half_open_calls=1)
    calls(instance, failed=True, count=1)
    clock.now += 1
    assert instance.try_acquire()
    assert not instance.try_acquire()
    instance.release()
    assert instance.try_acquire()


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="window_type"):
        BreakerConfig(window_type="sliding")
