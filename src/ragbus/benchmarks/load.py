"""A closed-loop load generator: keep N questions in flight until all are answered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ragbus.benchmarks.stats import BenchConfig, BenchResult, summarize

#: Asks question number ``i`` and returns when it is answered.
AskOne = Callable[[int], Awaitable[object]]

QUESTIONS = (
    "How does ragbus handle a failed event?",
    "What is a dead letter and what does it record?",
    "How do I replay the dead-letter queue?",
    "Which LM answers by default?",
    "How does the circuit breaker work?",
    "What happens when the deadline of an event passes?",
    "How do I run a worker on RabbitMQ?",
    "What is a minimal envelope?",
)


def question(number: int) -> str:
    """The benchmark's ``number``-th question (a small rotating set, made distinct)."""
    return f"{QUESTIONS[number % len(QUESTIONS)]} (#{number})"


async def closed_loop(name: str, ask_one: AskOne, config: BenchConfig) -> BenchResult:
    """Run ``config.queries`` asks, ``config.concurrency`` at a time; time each one."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(config.queries))

    async def slot() -> None:
        nonlocal errors
        for number in counter:
            started = time.perf_counter()
            try:
                await ask_one(number)
            except Exception:
                errors += 1
            else:
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(slot() for _ in range(config.concurrency)))
    return summarize(name, latencies, time.perf_counter() - started, errors)
