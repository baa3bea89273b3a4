"""Run several contenders on the same load, interleaved in rounds to cancel drift.

On a shared, noisy machine the speed available drifts during a run. Each contender is
set up once; then every round asks each contender its share of the questions, in
turn, forwards in even rounds and backwards in odd ones (A B C, C B A, ...), so a
linear drift in the machine's speed hits every contender alike. Times, latencies,
errors and CPU are summed over the rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ragbus_bench.cpu import CpuMeter
from ragbus_bench.load import AskOne, closed_loop
from ragbus_bench.stats import BenchConfig, BenchResult, summarize


@dataclass
class Contender:
    """One way of answering the benchmark's questions, set up and warmed up.

    Parameters:
        name: its name in results.
        ask_one: asks question number ``i`` and returns when it is answered.
        cpu: what CPU to count while it runs (default: this process only).
    """

    name: str
    ask_one: AskOne
    cpu: CpuMeter = field(default_factory=CpuMeter)


@dataclass
class _Tally:
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    broker_s: float | None = None


def round_order(count: int, round_number: int) -> list[int]:
    """Indexes of ``count`` contenders in round ``round_number``: forwards in even
    rounds, backwards in odd ones."""
    order = list(range(count))
    return order if round_number % 2 == 0 else order[::-1]


async def run_rounds(
    contenders: Sequence[Contender], config: BenchConfig, *, rounds: int = 2
) -> list[BenchResult]:
    """Ask every contender ``config.queries`` questions, ``config.concurrency`` at a
    time, in ``rounds`` interleaved rounds; results in the order of ``contenders``.

    Parameters:
        contenders: the contenders, set up.
        config: questions and how many in flight.
        rounds: rounds to split the questions into (default 2: A B C, then C B A);
            each costs a ramp-up and a drain, so keep it small.
    """
    rounds = max(1, min(rounds, config.queries))
    tallies = [_Tally() for _ in contenders]
    for number in range(rounds):
        first = config.queries * number // rounds
        last = config.queries * (number + 1) // rounds
        for index in round_order(len(contenders), number):
            contender, tally = contenders[index], tallies[index]
            before = contender.cpu.sample()
            batch = await closed_loop(contender.ask_one, range(first, last), config.concurrency)
            after = contender.cpu.sample()
            tally.latencies_s += batch.latencies_s
            tally.errors += batch.errors
            tally.seconds += batch.seconds
            tally.cpu_s += after.pipeline_s - before.pipeline_s
            if after.broker_s is not None and before.broker_s is not None:
                tally.broker_s = (tally.broker_s or 0.0) + after.broker_s - before.broker_s
    return [
        summarize(
            contender.name,
            tally.latencies_s,
            tally.seconds,
            tally.errors,
            cpu_s=tally.cpu_s,
            broker_cpu_s=tally.broker_s,
        )
        for contender, tally in zip(contenders, tallies, strict=True)
    ]
