"""Helpers of the fault-injection tests: settings tuned for speed, dead letters, metrics."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from ragbus.bus.base import Bus, DeadLetter, DeadLetterFilter
from ragbus.client import Client
from ragbus.config import Settings
from ragbus.events import Envelope, new_event, utc_now
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.pipelines.rag import STAGE_NAMES
from tests.amqp import TIERS
from tests.lm_server import FakeLMServer
from tests.polling import wait_until

#: Redelivery delays of the runtime in these tests, equal to the RabbitMQ test tiers.
DELAYS = TIERS

#: A question the bundled corpus has passages for (so the generate stage calls the LM).
QUESTION = "How does ragbus handle a failed event?"


def fault_settings(tmp_path: Path, lm: FakeLMServer, **overrides: Any) -> Settings:
    """Settings whose LM is a real ``dspy.LM`` talking HTTP to ``lm``, with every guard
    tuned to act within fractions of a second; ``overrides`` go on top."""
    values: dict[str, Any] = {
        "dlq_path": tmp_path / "dlq.sqlite3",
        "lm_model": "openai/test-model",
        "lm_api_base": lm.api_base,
        "lm_api_key": "test",
        "concurrency": 16,
        "stage_timeout_s": 5.0,
        "max_attempts": 3,
        "shutdown_grace_s": 1.0,
        "redelivery_delays_s": DELAYS,
        "retry_attempts": 2,
        "retry_initial_s": 0.01,
        "retry_max_s": 0.2,
        "breaker_minimum_calls": 4,
        "breaker_window_size": 8,
        "breaker_open_s": 0.5,
        "breaker_half_open_calls": 2,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def bus_options(bus_kind: str) -> dict[str, Any]:
    """Constructor options of a test bus: RabbitMQ gets the short delay tiers."""
    return {"delay_tiers": TIERS} if bus_kind == "rabbitmq" else {}


async def dead_letters_when(
    bus: Bus, count: int, *, where: DeadLetterFilter | None = None, timeout: float = 15.0
) -> list[DeadLetter]:
    """The dead letters matching ``where`` once there are at least ``count`` of them."""
    letters: list[DeadLetter] = []

    async def enough() -> bool:
        nonlocal letters
        letters = await bus.dead_letters(STAGE_NAMES).select(where or DeadLetterFilter())
        return len(letters) >= count

    await wait_until(enough, what=f"{count} dead letters", timeout=timeout, interval=0.05)
    return letters


def metric(client: Client, name: str, **labels: str) -> float:
    """The value of a sample of the client's embedded runtime metrics (0 when absent)."""
    assert client.runtime is not None, "the client runs no pipeline"
    value = client.runtime.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def publish_question(client: Client, question: str, *, deadline_s: float) -> Envelope:
    """Publish ``question`` with a deadline ``deadline_s`` seconds from now, and wait for
    nothing: unlike an asker who gives up (which cancels its question), nobody cancels
    it, so when its deadline passes it expires."""
    query = new_event(
        RagEvent.QUERY_RECEIVED,
        QueryReceived(question=question),
        deadline=utc_now() + timedelta(seconds=deadline_s),
    )
    await client.publish(query)
    return query
