"""The timeout guard: each handler call is bounded by its stage's time and the deadline.

Settings: ``RAGBUS_STAGE_TIMEOUT_S`` (default 60) is every stage's limit unless the
stage sets its own (``Stage.timeout_s``).
"""

from __future__ import annotations

import asyncio

from ragbus.events import Envelope, utc_now
from ragbus.runtime.guards.deadline import expired
from ragbus.runtime.stage import Handler, Stage


class TimeoutGuard:
    """Bounds one handler call by ``min(stage.timeout_s, time left before the deadline)``.

    Running out of the stage's time raises ``TimeoutError`` (transient); running past the
    deadline raises :class:`EventExpired`. The call is cancelled either way.
    """

    async def __call__(
        self, stage: Stage, envelope: Envelope, call_next: Handler
    ) -> list[Envelope]:
        budget = stage.timeout_s
        if envelope.deadline is not None:
            budget = min(budget, (envelope.deadline - utc_now()).total_seconds())
            if budget <= 0:
                raise expired(envelope)
        try:
            async with asyncio.timeout(budget):
                return await call_next(envelope)
        except TimeoutError as exc:
            if envelope.is_expired():
                raise expired(envelope) from exc
            raise TimeoutError(f"stage {stage.name} took longer than {budget:.3g}s") from exc
