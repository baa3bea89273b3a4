"""Run the pipeline benchmark and its anchor in one process, one after the other."""

from __future__ import annotations

from ragbus.benchmarks.anchor_memory import run_memory_anchor
from ragbus.benchmarks.load import closed_loop, question
from ragbus.benchmarks.stats import BenchConfig, BenchResult
from ragbus.client import Client
from ragbus.config import BusKind, Settings
from ragbus.pipelines.rag import rag_pipeline

__all__ = ["BenchConfig", "BenchResult", "render_results", "run_benchmarks"]


async def run_ragbus(settings: Settings, config: BenchConfig) -> BenchResult:
    """Benchmark ragbus: every stage in this process, on ``settings.bus``."""
    async with Client(settings, run_pipeline=True) as client:
        await client.ask("warm up", timeout=60)

        async def ask_one(number: int) -> object:
            return await client.ask(question(number), timeout=600)

        return await closed_loop(f"ragbus ({settings.bus.value} bus)", ask_one, config)


async def run_benchmarks(
    settings: Settings, config: BenchConfig, *, anchor: bool = True
) -> list[BenchResult]:
    """ragbus on ``settings.bus`` and, with ``anchor``, the hand-written chain(s)."""
    results = [await run_ragbus(settings, config)]
    if anchor and settings.bus is BusKind.MEMORY:
        retrieve, generate = (stage.handler for stage in rag_pipeline(settings))
        results.append(await run_memory_anchor(retrieve, generate, config))
    return results


def render_results(results: list[BenchResult], config: BenchConfig) -> str:
    """A text table of ``results`` with ratios to the first anchor and to the ideal."""
    header = (
        f"{config.queries} queries, concurrency {config.concurrency}, "
        f"LM latency {config.lm_latency_ms:g} ms"
    )
    lines = [header, f"{'contender':<34} {'q/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}"]
    for result in results:
        lines.append(
            f"{result.name:<34} {result.qps:>9.1f} {result.p50_ms:>9.1f} "
            f"{result.p99_ms:>9.1f} {result.errors:>7}"
        )
    ours = results[0]
    for other in results[1:]:
        lines.append(f"ragbus / {other.name}: {ours.qps / other.qps:.2f}x" if other.qps else "")
    if config.ideal_qps:
        lines.append(
            f"ragbus / ideal ({config.ideal_qps:.0f} q/s): {ours.qps / config.ideal_qps:.2f}"
        )
    return "\n".join(lines)
