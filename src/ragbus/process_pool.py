"""Keep N copies of a ragbus command running on this host, and stop them cleanly.

``ragbus worker --processes N`` and ``ragbus serve --workers N`` run their children
through :class:`ProcessPool`: it starts them, restarts one that dies (after a backoff that
grows while a child keeps dying young, logged), and on :meth:`ProcessPool.drain` forwards
SIGTERM to every child and waits for each to finish its in-flight work, killing only
what is still running after the drain timeout.

Each child runs through :mod:`ragbus.pool_child`, which asks the kernel to send it
SIGTERM when this process dies, so a killed supervisor leaves no orphan behind: its
children drain and exit like on a normal stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ragbus.cli_common import ExitCode
from ragbus.config import Settings

logger = logging.getLogger(__name__)

#: Seconds before the first restart of a child that died.
RESTART_DELAY_S: Final = 0.5

#: Longest wait before a restart, however often a child dies.
MAX_RESTART_DELAY_S: Final = 30.0

#: A child that ran this long before dying is restarted after :data:`RESTART_DELAY_S`
#: again: it was not crash-looping.
STABLE_AFTER_S: Final = 30.0

#: Seconds on top of the drain timeout before a child still running is killed: its own
#: drain uses the whole timeout, then closes its connections.
EXIT_MARGIN_S: Final = 5.0


#: Exit codes of a ``ragbus`` child that a restart would only repeat: a wrong command
#: line or setting, a broker not reachable within ``RAGBUS_CONNECT_TIMEOUT_S``.
FATAL_EXIT_CODES: Final = frozenset({ExitCode.USAGE, ExitCode.CONFIGURATION, ExitCode.UNAVAILABLE})


def child_command(arguments: Sequence[str]) -> list[str]:
    """``python -m ragbus.pool_child <this pid> ARGUMENTS``: ``ragbus ARGUMENTS`` run
    with this interpreter, as a child that stops when this process dies."""
    return [sys.executable, "-m", "ragbus.pool_child", str(os.getpid()), *arguments]


def settings_environment(settings: Settings, number: int) -> dict[str, str]:
    """The environment of child ``number``: this process's, with its own
    ``RAGBUS_WORKER_ID`` (``<id>-<number>``, so dead letters name it) and the settings a
    command line may have overridden (bus, app, concurrency, corpus, log format)."""
    env = dict(os.environ)
    env.update(
        RAGBUS_WORKER_ID=f"{settings.worker_id}-{number}",
        RAGBUS_BUS=settings.bus.value,
        RAGBUS_APP=settings.app,
        RAGBUS_CONCURRENCY=str(settings.concurrency),
        RAGBUS_LOG_FORMAT=settings.log_format,
    )
    if settings.corpus is not None:
        env["RAGBUS_CORPUS"] = str(settings.corpus)
    return env


def restart_delay(deaths_in_a_row: int) -> float:
    """Seconds before restarting a child that died young ``deaths_in_a_row`` times in a
    row (from 1): :data:`RESTART_DELAY_S`, doubling, at most :data:`MAX_RESTART_DELAY_S`."""
    exponent = min(max(deaths_in_a_row, 1) - 1, 16)
    return min(RESTART_DELAY_S * float(2**exponent), MAX_RESTART_DELAY_S)


@dataclass
class Child:
    """One slot of the pool and the process that fills it now."""

    number: int
    process: asyncio.subprocess.Process
    started: float = field(default_factory=time.monotonic)
    deaths_in_a_row: int = 0


class ProcessPool:
    """``count`` copies of a command, restarted when they die, drained together.

    Parameters:
        command: the child's argv for slot ``number`` (0 .. count - 1), e.g. from
            :func:`child_command`.
        count: how many children.
        environment: the child's whole environment for slot ``number``.
        name: what the children are called in log lines (default ``worker``).
        drain_s: seconds each child gets to finish its in-flight work after SIGTERM
            (default 30), plus :data:`EXIT_MARGIN_S`; then it is killed.
        on_exit: called with the pid of every child that exited, however it exited
            (default none), e.g. to drop its live metrics.
        fatal: exit codes that a restart would only repeat (a wrong setting, a broker
            that cannot be reached within the connect timeout): a child exiting with one
            ends the pool with that code, see :attr:`failed` (default
            :data:`FATAL_EXIT_CODES`).
    """

    def __init__(
        self,
        command: Callable[[int], Sequence[str]],
        count: int,
        environment: Callable[[int], Mapping[str, str]],
        *,
        name: str = "worker",
        drain_s: float = 30.0,
        on_exit: Callable[[int], None] | None = None,
        fatal: frozenset[int] = FATAL_EXIT_CODES,
    ) -> None:
        if count < 1:
            raise ValueError(f"a pool needs at least one process, not {count}")
        self.command = command
        self.count = count
        self.environment = environment
        self.name = name
        self.drain_s = drain_s
        self.on_exit = on_exit
        self.fatal = fatal
        #: set when a child exited with a :attr:`fatal` code (:attr:`failure`)
        self.failed = asyncio.Event()
        self.failure: int | None = None
        self.children: dict[int, Child] = {}
        self.restarts = 0
        self._stopping = asyncio.Event()
        self._watchers: list[asyncio.Task[None]] = []

    @property
    def pids(self) -> list[int]:
        """The pids of the children running now, by slot."""
        return [
            child.process.pid
            for _, child in sorted(self.children.items())
            if child.process.returncode is None
        ]

    async def _spawn(self, number: int) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.command(number), env=dict(self.environment(number))
        )

    async def start(self) -> None:
        """Start every child and watch it (restarting it when it dies)."""
        for number in range(self.count):
            self.children[number] = Child(number, await self._spawn(number))
            self._watchers.append(
                asyncio.create_task(self._watch(number), name=f"ragbus:{self.name}-{number}")
            )

    async def _watch(self, number: int) -> None:
        while True:
            child = self.children[number]
            code = await child.process.wait()
            self._exited(child.process.pid)
            if self._stopping.is_set():
                return
            if code in self.fatal:
                logger.error(
                    "%s %d (pid %d) %s: restarting it would fail the same way; stopping",
                    self.name,
                    number,
                    child.process.pid,
                    describe_exit(code),
                )
                self.failure = code
                self.failed.set()
                return
            lived = time.monotonic() - child.started
            deaths = 1 if lived >= STABLE_AFTER_S else child.deaths_in_a_row + 1
            delay = restart_delay(deaths)
            logger.warning(
                "%s %d (pid %d) %s after %.1f s; restarting it in %.1f s",
                self.name,
                number,
                child.process.pid,
                describe_exit(code),
                lived,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            self.children[number] = Child(number, await self._spawn(number), deaths_in_a_row=deaths)
            self.restarts += 1
            if self._stopping.is_set():  # the drain began while it started: it goes too
                self.children[number].process.send_signal(signal.SIGTERM)

    async def wait(self, stop: asyncio.Event) -> None:
        """Return once ``stop`` is set or a child exited with a :attr:`fatal` code."""
        waits = [asyncio.ensure_future(event.wait()) for event in (stop, self.failed)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def _exited(self, pid: int) -> None:
        if self.on_exit is not None:
            self.on_exit(pid)

    async def drain(self) -> int:
        """SIGTERM every child, wait for each to drain (killing it after the drain
        timeout), stop restarting; the exit code: :attr:`failure` after a fatal exit,
        else 0 when every child exited 0 (or, still starting, of the signal), else 1."""
        self._stopping.set()
        children = list(self.children.values())
        for child in children:
            if child.process.returncode is None:
                child.process.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(self._reap(child) for child in children))
        # a restart under way when the drain began: its child was signalled as it
        # started; wait for it the same way
        late = [child for child in self.children.values() if child not in children]
        await asyncio.gather(*(self._reap(child) for child in late))
        await asyncio.gather(*self._watchers, return_exceptions=True)
        # a child still starting has no handler yet and dies of the signal itself: it
        # held nothing, so that is a clean stop too
        clean = {0, -signal.SIGTERM, -signal.SIGINT}
        pairs = zip(children, codes, strict=True)
        failed = [(child, code) for child, code in pairs if code not in clean]
        for child, code in failed if self.failure is None else ():
            logger.warning(
                "%s %d (pid %d) %s while draining",
                self.name,
                child.number,
                child.process.pid,
                describe_exit(code),
            )
        if self.failure is not None:
            return self.failure
        return 1 if failed else 0

    async def _reap(self, child: Child) -> int:
        try:
            return await asyncio.wait_for(child.process.wait(), self.drain_s + EXIT_MARGIN_S)
        except TimeoutError:
            logger.warning(
                "%s %d (pid %d) still running %.0f s after SIGTERM: killing it",
                self.name,
                child.number,
                child.process.pid,
                self.drain_s + EXIT_MARGIN_S,
            )
            child.process.kill()
            return await child.process.wait()


def describe_exit(code: int) -> str:
    """``exited with 3`` or ``was killed by SIGKILL`` for a process's return code."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with {code}"
