"""Short in-process retries of transient failures (tenacity), bounded by the deadline."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_random_exponential

from ragbus.events import Envelope, utc_now
from ragbus.runtime.classify import FailureClass, classify, retry_after
from ragbus.runtime.metrics import Metrics
from ragbus.runtime.stage import Handler, Stage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """In-process retries before the event is handed to a delayed redelivery.

    Parameters:
        attempts: calls in all, the first included (default 3; 1 disables retries).
        initial_s: first backoff, doubled each time, fully jittered (default 0.1).
        max_s: longest backoff; a ``Retry-After`` longer than this ends in-process retries
            and the redelivery waits for it instead (default 2).
    """

    attempts: int = 3
    initial_s: float = 0.1
    max_s: float = 2.0


def _is_transient(exc: BaseException) -> bool:
    return classify(exc) is FailureClass.TRANSIENT


class _OutOfTime(stop_base):
    """Stops when the next sleep is longer than ``max_s`` (a long ``Retry-After``: the
    delayed redelivery waits for it instead) or would reach the event's deadline."""

    def __init__(self, envelope: Envelope, max_s: float) -> None:
        self.envelope = envelope
        self.max_s = max_s

    def __call__(self, retry_state: RetryCallState) -> bool:
        sleep = retry_state.upcoming_sleep
        if sleep > self.max_s:
            return True
        if self.envelope.deadline is None:
            return False
        return (self.envelope.deadline - utc_now()).total_seconds() <= sleep


class RetryGuard:
    """Retries transient failures with jittered exponential backoff (or ``Retry-After``),
    never past the event's deadline; then re-raises the last failure.

    Parameters:
        policy: attempts and backoff (default :class:`RetryPolicy()`).
        metrics: counts in-process retries (default: a private set).
    """

    def __init__(self, policy: RetryPolicy | None = None, metrics: Metrics | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self.metrics = metrics or Metrics()
        self._backoff = wait_random_exponential(
            multiplier=self.policy.initial_s, max=self.policy.max_s
        )

    def _wait(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        asked = retry_after(failure) if failure else None
        return asked if asked is not None else float(self._backoff(state))

    async def __call__(
        self, stage: Stage, envelope: Envelope, call_next: Handler
    ) -> list[Envelope]:
        try:
            return await call_next(envelope)  # the common case costs no retry machinery
        except Exception as exc:
            if self.policy.attempts <= 1 or not _is_transient(exc):
                raise
            first_failure = exc
        return await self._retry(stage, envelope, call_next, first_failure)

    async def _retry(
        self, stage: Stage, envelope: Envelope, call_next: Handler, first_failure: Exception
    ) -> list[Envelope]:
        """Calls 2..attempts under tenacity, the first having failed with ``first_failure``."""
        calls = 0

        async def call() -> list[Envelope]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise first_failure  # tenacity sees the first call's outcome as its own
            return await call_next(envelope)

        def before_sleep(state: RetryCallState) -> None:
            self.metrics.retried.labels(stage.name, "in_process").inc()
            logger.info(
                "stage %s: retrying %s in %.2fs after %r",
                stage.name,
                envelope.id,
                state.upcoming_sleep,
                state.outcome.exception() if state.outcome else None,
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.attempts) | _OutOfTime(envelope, self.policy.max_s),
            wait=self._wait,
            retry=retry_if_exception(_is_transient),
            before_sleep=before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await call()
        raise AssertionError("tenacity ended without an outcome")  # pragma: no cover
