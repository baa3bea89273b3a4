"""Drive the RAG pipeline against the stand-in LM with a capacity, and measure at the server.

Used by the adaptive concurrency test and by ``bench/adaptive.py``: a client keeps many
distinct questions outstanding (more than the LM takes), so the generate stage always
has work; the server counts what it served and what it refused (429), with times, and
the runtime's limit of LM calls in flight is sampled every 100 ms.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragbus.client import Client
from ragbus.config import Settings
from tests.lm_server import FakeLMServer

#: A question the bundled corpus has passages for; a counter makes each one distinct.
QUESTION = "How does ragbus handle a failed event? ({n})"


@dataclass
class LoadResult:
    """What one run measured.

    Parameters:
        limits: ``(seconds since start, limit of LM calls in flight)`` samples.
        served: times (since start) of the calls the server answered.
        refused: times (since start) of the calls it answered 429.
        answered: questions the client got an answer for.
    """

    limits: list[tuple[float, int]] = field(default_factory=list)
    served: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)
    answered: int = 0

    def rate(self, start: float, end: float) -> float:
        """Calls served per second between ``start`` and ``end`` seconds."""
        return sum(start <= t < end for t in self.served) / (end - start)

    def refused_share(self, start: float, end: float) -> float:
        """The share of calls between ``start`` and ``end`` answered 429."""
        refused = sum(start <= t < end for t in self.refused)
        served = sum(start <= t < end for t in self.served)
        return refused / max(1, refused + served)

    def limit_range(self, start: float, end: float) -> tuple[int, int]:
        """The lowest and highest limit sampled between ``start`` and ``end`` seconds."""
        values = [limit for t, limit in self.limits if start <= t < end]
        return (min(values), max(values)) if values else (0, 0)


def load_settings(tmp_path: Path, lm: FakeLMServer, **overrides: Any) -> Settings:
    """Settings of a run: a real ``dspy.LM`` over HTTP to ``lm``, the memory bus, enough
    stage concurrency that only the LM limit bounds calls, no cache (every question is
    new anyway)."""
    values: dict[str, Any] = {
        "dlq_path": tmp_path / "dlq.sqlite3",
        "lm_model": "openai/test-model",
        "lm_api_base": lm.api_base,
        "lm_api_key": "test",
        "concurrency": 256,
        "lm_concurrency_max": 256,
        "cache_enabled": False,
        "shutdown_grace_s": 1.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def run_load(
    settings: Settings, lm: FakeLMServer, *, seconds: float, outstanding: int
) -> LoadResult:
    """Keep ``outstanding`` questions asked for ``seconds``; what the server and the
    limiter did meanwhile."""
    assert lm.capacity is not None, "give the server a capacity first"
    result = LoadResult()
    numbers = itertools.count()
    started = time.monotonic()
    lm.capacity.served_times.clear()
    lm.capacity.rejected_times.clear()
    async with Client(settings) as client:
        assert client.runtime is not None
        limiters = client.runtime.guards.limiters

        async def asker() -> None:
            while time.monotonic() - started < seconds:
                try:
                    await client.ask(QUESTION.format(n=next(numbers)), timeout=30)
                except Exception:
                    continue  # counted at the server; the run goes on
                result.answered += 1

        async def sampler() -> None:
            while time.monotonic() - started < seconds:
                limit = limiters.limits().get("lm", settings.lm_concurrency_start)
                result.limits.append((time.monotonic() - started, limit))
                await asyncio.sleep(0.1)

        tasks = [asyncio.create_task(asker()) for _ in range(outstanding)]
        await sampler()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    result.served = [t - started for t in lm.capacity.served_times]
    result.refused = [t - started for t in lm.capacity.rejected_times]
    return result
