"""The throughput targets for ragbus against its anchors, and whether a run met them.

In queries/s, same handlers, same run:

- memory bus: ragbus >= 0.95x the asyncio anchor, at any LM latency;
- RabbitMQ, ``--lm-latency-ms 0``: ragbus >= 1.0x the raw aio-pika chain and >= 1.5x
  the FastStream chain;
- RabbitMQ, ``--lm-latency-ms > 0`` (200 with concurrency 100): ragbus >= 0.95x the raw
  aio-pika chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragbus.config import BusKind
from ragbus_bench.amqp_chain import AIOPIKA_NAME, FASTSTREAM_NAME
from ragbus_bench.anchor_memory import NAME as MEMORY_ANCHOR_NAME
from ragbus_bench.stats import BenchConfig, BenchResult, ragbus_name


@dataclass(frozen=True)
class Verdict:
    """One target applied to one run.

    Parameters:
        target: what is compared, e.g. ``ragbus / raw aio-pika chain``.
        threshold: the ratio to reach.
        ratio: the ratio measured.
        errors: questions that failed in the contenders compared (default 0); a run
            with errors is not judged.
    """

    target: str
    threshold: float
    ratio: float
    errors: int = 0

    @property
    def judged(self) -> bool:
        """Whether the run was clean enough to judge (no question failed)."""
        return self.errors == 0

    @property
    def met(self) -> bool:
        """Whether the ratio reached the threshold (in a run without errors)."""
        return self.judged and self.ratio >= self.threshold

    @property
    def shortfall(self) -> float:
        """How much faster ragbus would have to be to meet the target (0.12 = 12 %);
        0 when met."""
        return 0.0 if self.met or self.ratio <= 0 else self.threshold / self.ratio - 1

    @property
    def outcome(self) -> str:
        """``met``, ``missed: ragbus needs +N% q/s`` or ``not judged: N errors``."""
        if not self.judged:
            return f"not judged: {self.errors} question(s) failed"
        return "met" if self.met else f"missed: ragbus needs +{self.shortfall:.0%} q/s"

    def describe(self) -> str:
        """``<target> = <ratio> (target >= <threshold>): <outcome>``."""
        return f"{self.target} = {self.ratio:.2f} (target >= {self.threshold:g}): {self.outcome}"


def _find(results: Sequence[BenchResult], name: str) -> BenchResult | None:
    found = [result for result in results if result.name == name and result.qps > 0]
    return found[0] if found else None


def bus_of(results: Sequence[BenchResult]) -> BusKind:
    """The bus the ragbus contender (the first result) ran on (memory if unknown)."""
    for bus in BusKind:
        if results and results[0].name == ragbus_name(bus):
            return bus
    return BusKind.MEMORY


def evaluate(bus: BusKind, results: Sequence[BenchResult], config: BenchConfig) -> list[Verdict]:
    """The targets that apply to a run on ``bus`` and what it measured.

    Parameters:
        bus: the bus ragbus ran on.
        results: ragbus first, then the anchors.
        config: the run's settings (LM latency and concurrency give the ideal).
    """
    if not results:
        return []
    ours = results[0]
    if bus is BusKind.MEMORY:
        targets = ((MEMORY_ANCHOR_NAME, 0.95),)
    elif config.lm_latency_ms:
        targets = ((AIOPIKA_NAME, 0.95),)
    else:
        targets = ((AIOPIKA_NAME, 1.0), (FASTSTREAM_NAME, 1.5))
    verdicts = []
    for name, threshold in targets:
        theirs = _find(results, name)
        if theirs is not None:
            label = name.removeprefix("anchor: ")
            errors = ours.errors + theirs.errors
            verdicts.append(Verdict(f"ragbus / {label}", threshold, ours.qps / theirs.qps, errors))
    return verdicts
