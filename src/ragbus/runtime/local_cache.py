"""The in-process cache: a dictionary bounded by the bytes it holds, whose entries expire.

It answers the four calls :class:`ragbus.runtime.cache.SharedCache` makes of a backend
(``get``, ``set``, ``add``, ``delete``) like aiocache's backends do. aiocache's own memory
cache is unbounded, schedules a timer per entry and wraps every call in several layers
(about 30 µs a call, a tenth of the runtime's cost per question); this one is a dict.

It is bounded by bytes, not entries: cached results range from a few bytes (a
processed-event mark) to about a megabyte (a long answer with its passages), so a count
says nothing about memory. Each entry's size is measured once, when it is stored, by
:func:`size_of`: the memory of the value and of every object it holds, plus its key and
the entry's own bookkeeping. Values are JSON-like (dicts, lists, strings, numbers), so
this walks a few dozen objects per cached result, microseconds, never the bytes of a
string.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from ragbus.config.settings import CACHE_MAX_BYTES

#: Bytes an entry costs besides its key and value: the ``(expires_at, value, size)``
#: tuple, its float and int, and the ordered dict's slot, index and link. Measured with
#: tracemalloc on CPython 3.11 at the worst point of a cache that keeps evicting (its
#: hash table holds deleted slots until it is rebuilt): about 400 bytes.
ENTRY_OVERHEAD_BYTES: Final = 400


def size_of(value: object) -> int:
    """The bytes ``value`` occupies: ``sys.getsizeof`` of it and of every object its
    dicts, lists, tuples and sets hold, each container counted once. Strings and numbers
    shared with the rest of the program (small ints, literals) are counted each time,
    so the result errs on the high side.

    Parameters:
        value: a JSON-like value.
    """
    getsizeof = sys.getsizeof
    seen: set[int] = set()
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        # the common leaves first: this loop runs once per object of every cached result
        if kind is str or kind is int or kind is float or kind is bool or item is None:
            total += getsizeof(item)
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += getsizeof(item)
        if isinstance(item, dict):
            for key, member in item.items():
                total += getsizeof(key)
                stack.append(member)
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return total


class LocalCache:
    """A byte-bounded, expiring key-value store for one process; the least recently
    used entries go first when it is full.

    Parameters:
        max_bytes: bytes held at most, entries and their bookkeeping included (default
            :data:`~ragbus.config.settings.CACHE_MAX_BYTES`, 64 MiB). A value larger
            than this is not stored.
        clock: monotonic time source in seconds (default ``time.monotonic``).
    """

    def __init__(
        self,
        *,
        max_bytes: int = CACHE_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Any, int]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Bytes held now, as measured when each entry was stored."""
        return self._bytes

    async def get(self, key: str) -> Any | None:
        """The value under ``key``, or None when missing or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value, _ = entry
        if expires_at <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` under ``key`` for ``ttl`` seconds (default: forever); evicts
        the least recently used entries to make room. False, and nothing stored, when the
        value alone is larger than the whole cache."""
        self._remove(key)
        size = sys.getsizeof(key) + size_of(value) + ENTRY_OVERHEAD_BYTES
        if size > self.max_bytes:
            return False
        while self._bytes + size > self.max_bytes:
            _, (_, _, evicted) = self._entries.popitem(last=False)
            self._bytes -= evicted
        expires_at = self._clock() + ttl if ttl else float("inf")
        self._entries[key] = (expires_at, value, size)
        self._bytes += size
        return True

    async def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent; ``ValueError`` if it is present
        (aiocache's contract)."""
        if await self.get(key) is not None:
            raise ValueError(f"key {key!r} already exists")
        return await self.set(key, value, ttl)

    async def delete(self, key: str) -> int:
        """Remove ``key``; returns how many entries were removed (0 or 1)."""
        return 1 if self._remove(key) else 0

    async def close(self) -> None:
        """Nothing to release."""

    def _remove(self, key: str) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._bytes -= entry[2]
        return True
