"""Calls per minute, in this process (no Redis)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ragbus.events import Envelope, new_event, utc_now
from ragbus.runtime.guards.deadline import EventExpired
from ragbus.runtime.guards.rate_limit import (
    WINDOW_S,
    CallsPerMinute,
    RateLimitGuard,
    storage_uri,
)
from ragbus.runtime.stage import Stage
from ragbus.usage import report_tokens


async def answer(envelope: Envelope) -> list[Envelope]:
    return []


LM_STAGE = Stage(name="generate", consumes=("q",), handler=answer, dependency="lm")


def test_storage_follows_the_cache_url() -> None:
    assert storage_uri(None) == "async+memory://"
    assert storage_uri("redis://h:6379/2") == "async+redis://h:6379/2"
    assert storage_uri("rediss://u:p@h:6380/0") == "async+rediss://u:p@h:6380/0"


def test_a_quota_is_spent_evenly_over_its_minute() -> None:
    second, minute = CallsPerMinute({"lm": 150}).items["lm"]
    assert (second.amount, second.get_expiry()) == (3, 1)
    assert (minute.amount, minute.get_expiry()) == (150, WINDOW_S)


async def test_a_full_window_says_how_long_to_wait() -> None:
    calls = CallsPerMinute({"lm": 180})  # 3 per second
    assert [await calls.wait_s("lm") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await calls.wait_s("lm")
    assert 0 < wait <= 1.1  # the first call leaves the second's window within 1 s
    assert not calls.limits("retriever")


async def test_a_wait_past_the_deadline_expires_the_event() -> None:
    calls = CallsPerMinute({"lm": 1})
    guard = RateLimitGuard(calls)
    event = new_event("q", {"question": "x"}, deadline=utc_now() + timedelta(seconds=0.3))
    assert await guard(LM_STAGE, event, answer) == []
    with pytest.raises(EventExpired):
        await guard(LM_STAGE, event, answer)


async def test_other_dependencies_pass() -> None:
    guard = RateLimitGuard(CallsPerMinute({"lm": 1}))
    free = Stage(name="retrieve", consumes=("q",), handler=answer, dependency="retriever")
    event = new_event("q", {"question": "x"})
    for _ in range(5):
        assert await guard(free, event, answer) == []


async def test_spent_tokens_hold_the_next_call_until_the_minute_is_over() -> None:
    calls = CallsPerMinute({}, tokens_per_minute={"lm": 50})
    assert calls.limits("lm")
    await calls.spend_tokens("lm", 30)
    assert await calls.wait_s("lm") == 0.0
    await calls.spend_tokens("lm", 30)  # past the budget: counted all the same
    assert 50 < await calls.wait_s("lm") <= 66


async def test_the_guard_counts_the_tokens_a_handler_reports() -> None:
    calls = CallsPerMinute({}, tokens_per_minute={"lm": 100})
    guard = RateLimitGuard(calls)

    async def costly(envelope: Envelope) -> list[Envelope]:
        report_tokens(60)
        return []

    event = new_event("q", {"question": "x"})
    await guard(LM_STAGE, event, costly)
    await guard(LM_STAGE, event, costly)
    assert await calls.wait_s("lm") > 50
