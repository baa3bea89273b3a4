"""CPU time of this process, of other local processes, and of a local RabbitMQ broker.

Read from ``/proc`` (Linux); where it is missing every figure is ``None`` rather than a
guess. CPU seconds per query show where the time of a benchmark goes: in the pipeline's
process(es) or in the broker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Process names of a RabbitMQ broker (the Erlang VM).
BROKER_PROCESS_NAMES = frozenset({"beam.smp", "beam"})

_PROC = Path("/proc")
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (``None`` if unreadable).

    Parameters:
        pid: the process id.
    """
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def pids_named(names: Iterable[str]) -> list[int]:
    """Ids of the local processes whose command name is one of ``names``.

    Parameters:
        names: command names as in ``/proc/<pid>/comm`` (e.g. ``beam.smp``).
    """
    wanted = frozenset(names)
    found = []
    for entry in _PROC.glob("[0-9]*"):
        try:
            if (entry / "comm").read_text().strip() in wanted:
                found.append(int(entry.name))
        except OSError:
            continue
    return sorted(found)


def total_cpu_seconds(pids: Sequence[int]) -> float | None:
    """The sum of :func:`process_cpu_seconds` over ``pids`` (``None`` if none is readable)."""
    seconds = [s for s in (process_cpu_seconds(pid) for pid in pids) if s is not None]
    return sum(seconds) if seconds else None


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds consumed so far by the pipeline's processes and by the broker.

    Parameters:
        pipeline_s: this process plus the given worker processes.
        broker_s: the local broker, or ``None`` when not measured or not found.
    """

    pipeline_s: float
    broker_s: float | None


class CpuMeter:
    """Samples CPU time of this process, of ``worker_pids`` and of the local broker.

    Parameters:
        worker_pids: other processes doing the pipeline's work (default none).
        broker: also measure a local RabbitMQ broker (``beam.smp``) if one runs
            (default False).
    """

    def __init__(self, worker_pids: Sequence[int] = (), *, broker: bool = False) -> None:
        self.worker_pids = list(worker_pids)
        self.broker_pids = pids_named(BROKER_PROCESS_NAMES) if broker else []

    def sample(self) -> CpuSample:
        """CPU seconds used so far."""
        workers = total_cpu_seconds(self.worker_pids) or 0.0
        broker = total_cpu_seconds(self.broker_pids) if self.broker_pids else None
        return CpuSample(pipeline_s=time.process_time() + workers, broker_s=broker)
