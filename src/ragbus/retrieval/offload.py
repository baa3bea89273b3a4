"""Running CPU-bound search off the event loop.

A BM25 or vector search over a large corpus takes tens of milliseconds of CPU; run in
the event loop, it would hold up every other stage of the process for that long. So
searches run in a small pool of threads of their own: NumPy and SciPy release the GIL
in their inner loops, so the loop keeps handling events meanwhile. The pool leaves one
core of the process's to the event loop (on two cores, searches run one at a time: more
would take the loop's core too, and its events would wait for the OS scheduler instead
of the GIL), and it is separate from asyncio's default executor, so many concurrent
searches queue here rather than crowd out DNS lookups and file I/O.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, ParamSpec, TypeVar


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: Threads that search at once, per process: one core is left to the event loop.
SEARCH_THREADS: Final = max(1, min(4, _cores() - 1))

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _search_pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(SEARCH_THREADS, thread_name_prefix="ragbus-search")
        return _pool


async def off_loop(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``function(*args, **kwargs)`` run in the search threads; awaits its result.

    Parameters:
        function: CPU-bound work that is safe to run in another thread.
        *args: its positional arguments.
        **kwargs: its keyword arguments.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_search_pool(), functools.partial(function, *args, **kwargs))
