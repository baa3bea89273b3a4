"""A closed-loop load generator: keep N questions in flight until all are answered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

#: Seconds a question may take (also its deadline) before it counts as an error.
ASK_TIMEOUT_S = 30.0

#: Failed questions after which a batch stops asking (the rest count as failed too): a
#: broken contender (e.g. its broker restarted) fails fast instead of timing out
#: question after question.
MAX_ERRORS = 100

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


@dataclass
class Batch:
    """What one closed-loop batch measured.

    Parameters:
        latencies_s: latency of each answered question, in seconds.
        errors: questions that failed, timed out or were not asked after too many
            failures.
        seconds: wall time of the batch.
    """

    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0


async def closed_loop(
    ask_one: AskOne, numbers: Sequence[int], concurrency: int, *, max_errors: int = MAX_ERRORS
) -> Batch:
    """Ask the questions ``numbers``, ``concurrency`` at a time; time each one.

    Parameters:
        ask_one: asks one question and returns when it is answered.
        numbers: the question numbers to ask.
        concurrency: questions in flight at once.
        max_errors: stop asking after this many failures; the questions not asked
            count as failed (default :data:`MAX_ERRORS`).
    """
    batch = Batch()
    counter = iter(numbers)

    async def slot() -> None:
        for number in counter:
            if batch.errors >= max_errors:
                return
            started = time.perf_counter()
            try:
                await ask_one(number)
            except Exception:
                batch.errors += 1
            else:
                batch.latencies_s.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(slot() for _ in range(concurrency)))
    batch.seconds = time.perf_counter() - started
    batch.errors = len(numbers) - len(batch.latencies_s)
    return batch
