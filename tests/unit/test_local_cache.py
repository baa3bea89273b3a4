"""The in-process cache is bounded by the memory it holds, measured honestly."""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Callable

import pytest

from ragbus.runtime.cache import SharedCache
from ragbus.runtime.local_cache import ENTRY_OVERHEAD_BYTES, LocalCache, size_of

MiB = 1024 * 1024


def big_result(n: int, chars: int = 100_000) -> list[dict[str, object]]:
    """A cached generate result whose answer is ``chars`` long (fresh objects)."""
    return [
        {
            "type": "answer_generated",
            "payload": {
                "question": f"question {n}",
                "answer": f"{n}:" + "x" * chars,
                "sources": [{"doc_id": f"doc.md#{i}", "score": 1.5} for i in range(4)],
                "timings_ms": {"retrieve": 0.4, "generate": 5.0},
            },
        }
    ]


async def retained_bytes(fill: Callable[[LocalCache], object], cache: LocalCache) -> int:
    """Bytes still allocated after ``fill(cache)`` ran and dropped its own references."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await fill(cache)  # type: ignore[misc]
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("bound", "values", "make"),
    [
        (8 * MiB, 400, big_result),  # 400 answers of 100 kB: 40 MB offered
        (1 * MiB, 50_000, lambda n: 1),  # processed-event marks: tiny values, many keys
    ],
    ids=["large-results", "many-small-entries"],
)
async def test_memory_stays_within_the_byte_bound(
    bound: int, values: int, make: Callable[[int], object]
) -> None:
    cache = LocalCache(max_bytes=bound)

    async def fill(target: LocalCache) -> None:
        for n in range(values):
            await target.set(f"result:generate:fingerprint:{n:064d}", make(n), ttl=3600)

    held = await retained_bytes(fill, cache)

    assert cache.size_bytes <= bound
    # what the process really holds for the cache (tracemalloc), within 5% of the bound
    assert held <= bound * 1.05, f"{held / MiB:.1f} MiB held for a {bound / MiB:.0f} MiB bound"
    # and the bound is used, not evicted down to nothing: most of it holds entries
    assert held >= bound * 0.5
    assert 0 < len(cache) < values


async def test_the_measure_follows_real_memory() -> None:
    """size_of, plus the entry overhead, is never below what tracemalloc sees (so the
    bound holds) and not far above it (so the bound is used)."""
    cache = LocalCache(max_bytes=512 * MiB)

    async def fill(target: LocalCache) -> None:
        for n in range(200):
            await target.set(f"k{n}", big_result(n, chars=5_000), ttl=60)

    held = await retained_bytes(fill, cache)

    assert held <= cache.size_bytes <= held * 1.3, (cache.size_bytes, held)


async def test_least_recently_used_entries_go_first() -> None:
    one = size_of(big_result(0, 1000)) + sys.getsizeof("k0") + ENTRY_OVERHEAD_BYTES
    cache = LocalCache(max_bytes=int(one * 3.5))
    for n in range(3):
        await cache.set(f"k{n}", big_result(n, 1000))
    assert await cache.get("k0") is not None  # k0 is now the most recently used

    await cache.set("k3", big_result(3, 1000))

    assert [await cache.get(f"k{n}") is not None for n in range(4)] == [True, False, True, True]


async def test_a_value_larger_than_the_cache_is_not_stored_and_replaces_nothing() -> None:
    cache = LocalCache(max_bytes=64 * 1024)
    await cache.set("small", 1)
    await cache.set("huge", big_result(0))

    assert await cache.get("huge") is None
    assert await cache.get("small") == 1
    assert cache.size_bytes <= 64 * 1024


async def test_overwriting_a_key_does_not_count_it_twice() -> None:
    cache = LocalCache(max_bytes=MiB)
    for _ in range(10):
        await cache.set("same", big_result(0, 10_000))
    assert len(cache) == 1
    expected = size_of(big_result(0, 10_000)) + sys.getsizeof("same") + ENTRY_OVERHEAD_BYTES
    assert cache.size_bytes == expected
    await cache.delete("same")
    assert cache.size_bytes == 0


def test_size_of_counts_what_a_value_holds_and_each_container_once() -> None:
    text = "y" * 10_000
    assert size_of({"a": [text]}) > sys.getsizeof(text)
    shared = {"passage": text}
    pair = [shared, shared]
    assert size_of(pair) == sys.getsizeof(pair) + size_of(shared)
    looped: list[object] = []
    looped.append(looped)
    assert size_of(looped) == sys.getsizeof(looped)


async def test_the_shared_cache_without_redis_takes_its_bound() -> None:
    cache = SharedCache(max_bytes=64 * 1024)
    await cache.set("k", big_result(0))
    assert await cache.get("k") is None  # larger than the whole bound
