"""A closed-loop load generator: keep N questions in flight until all are answered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ragbus.benchmarks.cpu import CpuMeter
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


async def closed_loop(
    name: str, ask_one: AskOne, config: BenchConfig, *, cpu: CpuMeter | None = None
) -> BenchResult:
    """Run ``config.queries`` asks, ``config.concurrency`` at a time; time each one.

    Parameters:
        name: the contender's name in the result.
        ask_one: asks one question and returns when it is answered.
        config: how many questions, how many in flight.
        cpu: measures CPU time during the run (default: this process only, no broker).
    """
    cpu = cpu or CpuMeter()
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

    before = cpu.sample()
    started = time.perf_counter()
    await asyncio.gather(*(slot() for _ in range(config.concurrency)))
    seconds = time.perf_counter() - started
    after = cpu.sample()
    broker_s = (
        after.broker_s - before.broker_s
        if after.broker_s is not None and before.broker_s is not None
        else None
    )
    return summarize(
        name,
        latencies,
        seconds,
        errors,
        cpu_s=after.pipeline_s - before.pipeline_s,
        broker_cpu_s=broker_s,
    )
