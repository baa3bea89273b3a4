"""One ``/metrics`` for the processes of a pool (prometheus-client's multiprocess mode).

A supervisor (``ragbus worker --processes``, ``ragbus serve --workers``) makes a private
temporary folder (:func:`metrics_directory`) and starts its processes with
``PROMETHEUS_MULTIPROC_DIR`` pointing at it: prometheus-client, imported after that, then
writes every metric of the process to files there. :class:`PoolMetrics` reads them all
back and sums them: counters and histograms over every process that ran (a restarted
process's counts stay), gauges as their ``multiprocess_mode`` says (``livesum``,
``livemax``: over the live processes; :meth:`PoolMetrics.process_exited` drops a dead
one's).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

#: The variable prometheus-client reads to write its metrics to files.
MULTIPROC_DIR_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"


#: Bytes of a metrics file's header (its used length); a shorter file is being created.
_FILE_HEADER_BYTES: Final = 8


class SettledFilesCollector:
    """prometheus-client's multiprocess collector, without the files still being created.

    A process creates its file empty and then sizes it; ``MultiProcessCollector``
    reads every file it finds and fails with ``struct.error`` on an empty one, so a
    scrape just as a worker starts or restarts would fail. This one merges the files
    that have their header (through the same public ``merge``).

    Parameters:
        directory: the processes' ``PROMETHEUS_MULTIPROC_DIR``.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        """The merged metrics of every settled file."""
        files = []
        for path in self.directory.glob("*.db"):
            with contextlib.suppress(FileNotFoundError):  # a dead process's live gauges
                if path.stat().st_size >= _FILE_HEADER_BYTES:
                    files.append(str(path))
        merged: Iterable[Metric] = MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        return merged


class PoolMetrics:
    """The metrics of every process writing to ``directory``, summed on each render.

    Parameters:
        directory: the processes' ``PROMETHEUS_MULTIPROC_DIR``.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.registry = CollectorRegistry()
        self.registry.register(SettledFilesCollector(directory))

    def render(self) -> bytes:
        """The summed metrics in Prometheus's text format."""
        return generate_latest(self.registry)

    def value(self, name: str) -> float:
        """The sum of the samples of metric family ``name`` (0 when there is none)."""
        for family in self.registry.collect():
            if family.name == name:
                return sum(sample.value for sample in family.samples)
        return 0.0

    def process_exited(self, pid: int) -> None:
        """Drop the live gauges of process ``pid``."""
        mark_process_dead(pid, str(self.directory))  # type: ignore[no-untyped-call]


def shared_metrics() -> PoolMetrics | None:
    """The pool's metrics when this process is one of a pool's (its environment names a
    metrics folder), else None."""
    directory = os.environ.get(MULTIPROC_DIR_VARIABLE)
    return PoolMetrics(Path(directory)) if directory and Path(directory).is_dir() else None


@contextlib.contextmanager
def metrics_directory() -> Iterator[Path]:
    """A private temporary folder for a pool's metric files, deleted afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="ragbus-metrics-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
