"""How long the ``ragbus`` command takes to start: each command a fresh process.

Commands run in turns (every command once, then every command again, ...), so drift in
the machine's speed hits them alike. Each one is timed from its start until its first
line of output (for ``ask``: the answer) and until it exits, and its CPU time (user +
system) is taken from the kernel's accounting of the finished child. Targets: the
quick commands under 0.3 s to exit, ``ask`` on the embedded default under 1 s to its
answer.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Wall-time targets in seconds: the quick commands to exit, ``ask`` to its answer.
QUICK_TARGET_S = 0.3
ASK_TARGET_S = 1.0


@dataclass(frozen=True)
class Command:
    """One command line to time.

    Parameters:
        label: its name in results, e.g. ``ragbus --help``.
        argv: its arguments after ``ragbus``.
        target_s: the wall time to stay under, in seconds.
        until_first_line: judge the time to the first line of output rather than to
            the exit (default False).
        env: settings for it on top of the environment (default none).
    """

    label: str
    argv: tuple[str, ...]
    target_s: float
    until_first_line: bool = False
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class StartTime:
    """What the runs of one command measured (seconds).

    Parameters:
        label: the command.
        target_s: its target.
        judged_on: ``exit`` or ``first line``.
        first_line_s, exit_s, cpu_s: each run's figures.
        errors: runs that failed (default 0).
    """

    label: str
    target_s: float
    judged_on: str
    first_line_s: list[float] = field(default_factory=list)
    exit_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def judged_s(self) -> float:
        """The median of the times the target applies to."""
        values = self.first_line_s if self.judged_on == "first line" else self.exit_s
        return statistics.median(values) if values else float("inf")

    @property
    def met(self) -> bool:
        """Whether the median run stayed under the target (and no run failed)."""
        return not self.errors and self.judged_s < self.target_s

    def as_dict(self) -> dict[str, object]:
        """The figures as JSON-able values."""
        return asdict(self)


def _child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_once(ragbus: Path, command: Command, env: Mapping[str, str]) -> tuple[float, float, float]:
    """Run ``command`` once: seconds to its first line of output, to its exit, and its
    CPU seconds. Raises ``RuntimeError`` when it fails."""
    cpu_before = _child_cpu_s()
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(ragbus), *command.argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env, **command.env},
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()
    first_line = time.perf_counter() - started
    process.stdout.read()
    error = process.stderr.read()
    code = process.wait()
    ended = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"ragbus {' '.join(command.argv)} exited {code}: {error.decode()}")
    return first_line, ended, _child_cpu_s() - cpu_before


def measure(
    ragbus: Path, commands: Sequence[Command], *, repeats: int, env: Mapping[str, str]
) -> list[StartTime]:
    """Time each of ``commands`` ``repeats`` times, in turns.

    Parameters:
        ragbus: the ``ragbus`` executable.
        commands: what to run.
        repeats: runs of each command.
        env: the environment of every run.
    """
    results = [
        StartTime(c.label, c.target_s, "first line" if c.until_first_line else "exit")
        for c in commands
    ]
    for _ in range(repeats):
        for command, result in zip(commands, results, strict=True):
            try:
                first_line, ended, cpu = time_once(ragbus, command, env)
            except RuntimeError:
                result.errors += 1
                continue
            result.first_line_s.append(first_line)
            result.exit_s.append(ended)
            result.cpu_s.append(cpu)
    return results


def _median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def render(results: Sequence[StartTime]) -> list[str]:
    """A Markdown table of ``results``: median and best wall times, CPU, verdict."""
    lines = [
        "| command | to first line s (median) | to exit s (median) | best s | CPU s (median) "
        "| target | verdict |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for result in results:
        best = f"{min(result.exit_s):.2f}" if result.exit_s else "-"
        if result.errors:
            verdict = f"**not judged**: {result.errors} run(s) failed"
        else:
            verdict = "**met**" if result.met else "**missed**"
        lines.append(
            f"| `{result.label}` | {_median(result.first_line_s)} | {_median(result.exit_s)} "
            f"| {best} | {_median(result.cpu_s)} | {result.judged_on} < {result.target_s:g} s "
            f"| {verdict} |"
        )
    return lines


def default_env(data_home: Path) -> dict[str, str]:
    """The environment of the runs: this one without ``RAGBUS_`` settings, with a user
    data directory (the memory bus's DLQ file) of the benchmark's own."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAGBUS_")}
    env["XDG_DATA_HOME"] = str(data_home)
    return env
