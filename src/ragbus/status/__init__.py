"""The pipeline's state at a glance: what ``ragbus status`` and ``/v1/status`` show.

- :mod:`~ragbus.status.model`: the status of each stage, merged from heartbeats, queue
  statistics and dead letters (pure, no I/O);
- :mod:`~ragbus.status.board`: listens for workers' heartbeats;
- :mod:`~ragbus.status.collect`: asks the bus for queue depths and dead letters;
- :mod:`~ragbus.status.table`: the status as a ``rich`` table.
"""

from ragbus.status.model import PipelineStatus, StageStatus, WorkerSeen, build_status

__all__ = ["PipelineStatus", "StageStatus", "WorkerSeen", "build_status"]
