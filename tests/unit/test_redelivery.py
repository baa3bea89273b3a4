"""Redelivery decisions: classify -> attempt + 1 -> delay tier -> redeliver or DLQ (no I/O)."""

from __future__ import annotations

import pytest

from ragbus.config import Settings
from ragbus.errors import PermanentError, TransientError
from ragbus.events import Envelope, new_event
from ragbus.runtime.classify import BreakerOpenError, FailureClass
from ragbus.runtime.redelivery import (
    DELAY_TIERS,
    DELIVERY_LIMIT,
    MAX_ATTEMPTS,
    Outcome,
    decide,
    jittered,
    redelivery_delay,
)
from ragbus.runtime.stage import Stage


def event(attempt: int = 1) -> Envelope:
    return new_event("query_received", {"question": "q"}).model_copy(update={"attempt": attempt})


@pytest.mark.parametrize(
    ("attempt", "tier"), [(1, 1.0), (2, 5.0), (3, 30.0), (4, 120.0), (9, 120.0)]
)
def test_the_delay_follows_the_tiers_and_the_last_repeats(attempt: int, tier: float) -> None:
    assert redelivery_delay(attempt) == tier
    decision = decide(event(attempt), TransientError("flaky"), max_attempts=10)
    assert decision.outcome is Outcome.REDELIVER
    assert tier * 0.8 <= decision.delay_s <= tier


def test_a_transient_failure_is_redelivered_with_the_next_attempt() -> None:
    original = event(2)
    decision = decide(original, TimeoutError(), max_attempts=5)
    assert decision.failure is FailureClass.TRANSIENT
    assert decision.retry is not None
    assert decision.retry.attempt == 3
    assert decision.retry.id == original.id
    assert original.attempt == 2  # the delivered event is left as it was


def test_the_last_attempt_goes_to_the_dlq() -> None:
    decision = decide(event(5), TransientError("flaky"), max_attempts=5)
    assert decision.outcome is Outcome.DEAD_LETTER
    assert decision.retry is None


def test_a_permanent_failure_goes_to_the_dlq_at_once() -> None:
    decision = decide(event(1), PermanentError("bad input"))
    assert (decision.outcome, decision.failure) == (Outcome.DEAD_LETTER, FailureClass.PERMANENT)


def test_an_open_breaker_requeues_without_counting() -> None:
    decision = decide(event(5), BreakerOpenError("lm"), max_attempts=5)
    assert decision.outcome is Outcome.REQUEUE
    assert decision.retry is None


def test_retry_after_replaces_the_tier() -> None:
    decision = decide(event(1), TransientError("429", retry_after=7.0))
    assert decision.delay_s == 7.0


def test_custom_tiers() -> None:
    decision = decide(event(2), TransientError("x"), tiers=(2.0, 4.0))
    assert 3.2 <= decision.delay_s <= 4.0


def test_jitter_only_shortens() -> None:
    assert all(8.0 <= jittered(10.0) <= 10.0 for _ in range(200))


def test_the_constants_are_the_defaults_everywhere() -> None:
    from ragbus.bus.memory import DEFAULT_DELIVERY_LIMIT
    from ragbus.bus.rabbitmq.topology import DEFAULT_DELAY_TIERS, Topology

    fields = Settings.model_fields
    assert fields["redelivery_delays_s"].default == DELAY_TIERS == DEFAULT_DELAY_TIERS
    assert fields["delivery_limit"].default == DELIVERY_LIMIT == DEFAULT_DELIVERY_LIMIT
    assert fields["max_attempts"].default == MAX_ATTEMPTS
    assert Stage.__dataclass_fields__["max_attempts"].default == MAX_ATTEMPTS
    assert Topology.__dataclass_fields__["delivery_limit"].default == DELIVERY_LIMIT
