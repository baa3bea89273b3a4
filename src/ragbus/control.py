"""Control events: what ragbus processes tell each other, beside a pipeline's events.

They travel on the same bus and exchange as a pipeline's events, as *transient* events
(best effort, never persisted, never dead-lettered) of reserved types whose names start
with ``ragbus.`` (a pipeline may not register such a name). Any process follows them
with an ephemeral subscription to the types it cares about and decodes them with
:data:`CONTROL_EVENTS`:

- ``ragbus.cancel``: nobody waits for a request any more (its client left, timed out or
  was interrupted): stages drop its queued events and stop its work in flight;
- ``ragbus.heartbeat``: a worker says, every few seconds, what it serves and how it is
  doing (for ``ragbus status``).
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from ragbus.events import EventRegistry

#: The prefix reserved for control event types.
CONTROL_PREFIX: Final = "ragbus."

CANCEL: Final = "ragbus.cancel"
HEARTBEAT: Final = "ragbus.heartbeat"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CancelRequested(_Strict):
    """Stop every event of one request: nobody waits for its result.

    Parameters:
        correlation_id: the request's correlation id.
        reason: why, for logs (default "").
    """

    correlation_id: uuid.UUID
    reason: str = Field(default="", max_length=200)


class WorkerHeartbeat(_Strict):
    """What one worker serves and how it is doing, sent every few seconds.

    Parameters:
        worker_id: the worker's name (``RAGBUS_WORKER_ID``).
        app: the pipeline it serves.
        stages: the stages it serves.
        interval_s: seconds until its next heartbeat.
        stats: per stage, what it counts (in flight, processed, failures, limits, ...).
        breakers: per dependency, its breaker's state (``closed``, ``half_open``, ``open``).
    """

    worker_id: str = Field(max_length=200)
    app: str = Field(max_length=200)
    stages: list[str]
    interval_s: float = Field(gt=0)
    stats: dict[str, dict[str, Any]] = Field(default_factory=dict)
    breakers: dict[str, str] = Field(default_factory=dict)


#: The control event types, for decoding what a control subscription receives.
CONTROL_EVENTS: Final = EventRegistry()
CONTROL_EVENTS.register(CANCEL, CancelRequested, transient=True)
CONTROL_EVENTS.register(HEARTBEAT, WorkerHeartbeat, transient=True)
