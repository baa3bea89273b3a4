"""Run the pipeline benchmark beside its anchors, in one process, interleaved in rounds."""

from __future__ import annotations

from contextlib import AsyncExitStack

from ragbus.config import BusKind, Settings
from ragbus_bench.contenders import open_contenders
from ragbus_bench.rounds import run_rounds
from ragbus_bench.stats import BenchConfig, BenchResult
from ragbus_bench.targets import bus_of, evaluate

__all__ = ["BenchConfig", "BenchResult", "render_results", "run_benchmarks"]


async def run_benchmarks(
    settings: Settings, config: BenchConfig, *, anchor: bool = True, rounds: int = 4
) -> list[BenchResult]:
    """ragbus on ``settings.bus`` and, with ``anchor``, the hand-written chain(s), all
    set up at once and run in interleaved rounds (see :mod:`ragbus_bench.rounds`).

    Parameters:
        settings: the bus, broker URL, corpus, LM and per-stage concurrency.
        config: questions, how many in flight, LM latency.
        anchor: also run the anchors (default True): on the memory bus a chain of
            ``asyncio.Queue``s; on RabbitMQ a raw aio-pika chain and a FastStream chain.
        rounds: interleaved rounds (default 4: ragbus then the anchors, then in
            reverse, twice).
    """
    async with AsyncExitStack() as stack:
        contenders = await open_contenders(stack, settings, anchor=anchor)
        return await run_rounds(contenders, config, rounds=rounds)


def render_table(results: list[BenchResult], config: BenchConfig) -> list[str]:
    """The lines of a text table of ``results``, under a header line describing ``config``."""
    header = (
        f"{config.queries} queries, concurrency {config.concurrency}, "
        f"LM latency {config.lm_latency_ms:g} ms"
    )
    lines = [
        header,
        f"{'contender':<34} {'q/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7} "
        f"{'cpu ms/q':>9} {'broker ms/q':>12}",
    ]
    for result in results:
        cpu, broker = result.cpu_ms_per_query, result.broker_cpu_ms_per_query
        lines.append(
            f"{result.name:<34} {result.qps:>9.1f} {result.p50_ms:>9.1f} "
            f"{result.p99_ms:>9.1f} {result.errors:>7} "
            f"{'-' if cpu is None else f'{cpu:.2f}':>9} "
            f"{'-' if broker is None else f'{broker:.2f}':>12}"
        )
    return lines


def render_results(
    results: list[BenchResult], config: BenchConfig, bus: BusKind | None = None
) -> str:
    """A text table of ``results`` with ratios to each anchor and to the ideal, and the
    issue's targets for ``bus`` (default: the bus of the ragbus contender, see
    :func:`bus_of`)."""
    lines = render_table(results, config)
    ours = results[0]
    for other in results[1:]:
        if other.qps:
            lines.append(f"ragbus / {other.name}: {ours.qps / other.qps:.2f}x")
    if config.ideal_qps:
        lines.append(
            f"ragbus / ideal ({config.ideal_qps:.0f} q/s): {ours.qps / config.ideal_qps:.2f}"
        )
    verdicts = evaluate(bus or bus_of(results), results, config)
    lines += [f"target: {verdict.describe()}" for verdict in verdicts]
    return "\n".join(lines)
