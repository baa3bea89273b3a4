"""Coalescing leases in Redis are renewed while their holder works and end soon after
it stops: a lease never outlives its holder by more than its short time to live."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from ragbus.runtime.cache import SharedCache
from ragbus.runtime.lease import LeaseOutcome, RedisLeases
from tests.polling import wait_until
from tests.redis_keys import key_prefix, redis_client

pytestmark = [pytest.mark.timeout(60), pytest.mark.redis]

TTL_S = 0.6


@pytest.fixture
async def namespace(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    async with key_prefix(redis_url) as prefix:
        yield prefix


@pytest.fixture
async def leases(redis_url: str, namespace: str) -> AsyncIterator[tuple[RedisLeases, RedisLeases]]:
    """Two processes' lease stores on one Redis."""
    first = RedisLeases(redis_url, namespace=namespace, ttl_s=TTL_S)
    second = RedisLeases(redis_url, namespace=namespace, ttl_s=TTL_S)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_a_lease_lives_while_its_holder_works_and_ends_when_released(
    leases: tuple[RedisLeases, RedisLeases],
) -> None:
    holder, other = leases
    token = await holder.acquire("lease:a", owner="holder")
    assert token is not None and token.startswith("holder:")

    await asyncio.sleep(TTL_S * 4)  # four times its time to live, renewed all along

    assert await other.is_held("lease:a")
    assert await other.acquire("lease:a") is None
    await holder.release("lease:a", token)
    assert not await other.is_held("lease:a")
    assert await other.acquire("lease:a") is not None


async def test_a_holder_that_stops_renewing_loses_its_lease_within_its_time_to_live(
    redis_url: str, namespace: str
) -> None:
    holder = RedisLeases(redis_url, namespace=namespace, ttl_s=TTL_S)
    watcher = RedisLeases(redis_url, namespace=namespace, ttl_s=TTL_S)
    try:
        assert await holder.acquire("lease:b") is not None
        await asyncio.sleep(TTL_S * 2)
        await holder.close()  # like a killed process: no release, no more renewals
        stopped = time.monotonic()

        await wait_until(
            lambda: _not_held(watcher, "lease:b"),
            what="the stopped holder's lease gone",
            timeout=5,
            interval=0.01,
        )

        assert time.monotonic() - stopped <= TTL_S + 0.3
    finally:
        await watcher.close()


async def _not_held(leases: RedisLeases, name: str) -> bool:
    return not await leases.is_held(name)


async def test_a_lapsed_holder_never_releases_its_successors_lease(
    leases: tuple[RedisLeases, RedisLeases], redis_url: str, namespace: str
) -> None:
    stalled, successor = leases
    old = await stalled.acquire("lease:c", owner="stalled")
    assert old is not None
    async with redis_client(redis_url) as client:
        await client.delete(f"{namespace}lease:c")  # its lease lapsed during a stall
    new = await successor.acquire("lease:c", owner="successor")
    assert new is not None

    await stalled.release("lease:c", old)
    await asyncio.sleep(TTL_S)  # and its renewals do not extend the successor's lease

    assert await successor.is_held("lease:c")
    assert stalled.held == 0


async def test_a_lease_taken_over_is_no_longer_renewed_by_the_old_holder(
    leases: tuple[RedisLeases, RedisLeases],
    redis_url: str,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stalled, successor = leases
    assert await stalled.acquire("lease:d") is not None
    async with redis_client(redis_url) as client:
        await client.set(f"{namespace}lease:d", "someone-else", px=60_000)

    with caplog.at_level(logging.WARNING, "ragbus.runtime.lease"):
        await wait_until(lambda: stalled.held == 0, what="the old holder to let go", timeout=5)

    assert "ended before its holder finished" in caplog.text
    assert await successor.is_held("lease:d")


async def test_the_shared_cache_lease_block_takes_waits_and_releases(
    redis_url: str, namespace: str
) -> None:
    first = SharedCache(redis_url, namespace=namespace, lease_ttl_s=TTL_S)
    second = SharedCache(redis_url, namespace=namespace, lease_ttl_s=TTL_S)
    try:
        async with first.lease("lease:e", owner="first") as outcome:
            assert outcome is LeaseOutcome.TAKEN
            async with second.lease("lease:e") as other:
                assert other is LeaseOutcome.HELD
            assert await second.lease_held("lease:e")
        assert not await second.lease_held("lease:e")
    finally:
        await first.close()
        await second.close()


async def test_a_lease_store_that_is_down_says_so() -> None:
    cache = SharedCache("redis://127.0.0.1:1/0", timeout_s=0.2)  # nothing listens there
    try:
        async with cache.lease("lease:f") as outcome:
            assert outcome is LeaseOutcome.UNAVAILABLE
        assert await cache.lease_held("lease:f") is None
    finally:
        await cache.close()
