"""Redis for tests: a client for one block, and a key prefix of a test's own whose keys
are deleted afterwards (the Redis is shared: never touch keys a test did not make)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as redis


@contextlib.asynccontextmanager
async def redis_client(url: str) -> AsyncIterator[redis.Redis]:
    """A Redis client for the block, closed afterwards."""
    client = redis.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def key_prefix(url: str) -> AsyncIterator[str]:
    """A fresh ``ragbus-test-<hex>:`` prefix; every key under it is deleted afterwards."""
    prefix = f"ragbus-test-{uuid.uuid4().hex[:10]}:"
    try:
        yield prefix
    finally:
        async with redis_client(url) as client:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)
