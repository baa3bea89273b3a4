"""RAGBUS_LM_RPM through Redis: every process takes its places in one window."""

from __future__ import annotations

import pytest

from ragbus.runtime.guards.rate_limit import CallsPerMinute

pytestmark = pytest.mark.redis


async def test_two_limiters_share_one_window_through_redis(
    redis_url: str, cache_namespace: str
) -> None:
    one = CallsPerMinute({"lm": 180}, cache_url=redis_url, namespace=cache_namespace)
    other = CallsPerMinute({"lm": 180}, cache_url=redis_url, namespace=cache_namespace)
    waits = [await limiter.wait_s("lm") for limiter in (one, other, one, other)]
    assert waits[:3] == [0.0] * 3
    assert 0 < waits[3] <= 1.1  # the fourth call in a second, whichever process makes it
