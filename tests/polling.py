"""Waiting for a condition: the one way tests synchronise with what runs beside them.

A test never sleeps a fixed time hoping something happened meanwhile: it polls for
the condition until a deadline, and when the deadline passes it says what it waited
for, so a red run on a loaded machine explains itself.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

Condition = Callable[[], object | Awaitable[object]]


async def wait_until(
    condition: Condition,
    *,
    what: str,
    timeout: float = 10.0,
    interval: float = 0.02,
    report: Callable[[], str] | None = None,
) -> None:
    """Wait until ``condition()`` (sync or async) is true.

    Parameters:
        condition: checked at once, then every ``interval`` seconds; any truthy
            result ends the wait.
        what: what the test waits for, in words ("the worker consumes"); it names the
            failure when the deadline passes.
        timeout: seconds before giving up (default 10); keep it generous, a loaded
            2-core machine is slow.
        interval: seconds between two checks (default 0.02).
        report: called once on failure; its text (worker logs, counts) is appended
            to the message (default none).

    Raises:
        AssertionError: the condition was still false after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            message = f"gave up after {timeout:g}s waiting for {what}"
            if report is not None:
                message = f"{message}\n{report()}"
            raise AssertionError(message)
        await asyncio.sleep(interval)
