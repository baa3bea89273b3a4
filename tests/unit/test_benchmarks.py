"""The benchmark harness's own logic: rounds, targets, the report, the closed loop."""

from __future__ import annotations

import asyncio

import pytest

from ragbus.config import BusKind
from ragbus_bench.amqp_chain import AIOPIKA_NAME, FASTSTREAM_NAME, AnswerWaiters, new_query
from ragbus_bench.anchor_memory import NAME as MEMORY_ANCHOR_NAME
from ragbus_bench.cli_start import StartTime
from ragbus_bench.cli_start import render as render_start_times
from ragbus_bench.load import AskOne, closed_loop
from ragbus_bench.namespace import Namespace
from ragbus_bench.report import BEGIN, END, Run, render_section, splice
from ragbus_bench.rounds import Contender, round_order, run_rounds
from ragbus_bench.stats import BenchConfig, BenchResult, ragbus_name, summarize
from ragbus_bench.targets import bus_of, evaluate


def result(name: str, qps: float, errors: int = 0) -> BenchResult:
    return BenchResult(
        name=name, queries=1000, seconds=1000 / qps, p50_ms=1, p99_ms=2, errors=errors
    )


def test_rounds_alternate_direction() -> None:
    assert round_order(3, 0) == [0, 1, 2]
    assert round_order(3, 1) == [2, 1, 0]


async def test_run_rounds_asks_every_question_once_per_contender() -> None:
    asked: dict[str, list[int]] = {"a": [], "b": []}

    def asker(name: str) -> AskOne:
        async def ask_one(number: int) -> object:
            asked[name].append(number)
            await asyncio.sleep(0)
            return number

        return ask_one

    config = BenchConfig(queries=101, concurrency=7)
    results = await run_rounds(
        [Contender("a", asker("a")), Contender("b", asker("b"))], config, rounds=3
    )
    assert [r.name for r in results] == ["a", "b"]
    assert sorted(asked["a"]) == sorted(asked["b"]) == list(range(101))
    assert all(r.queries == 101 and r.errors == 0 and r.cpu_s is not None for r in results)


async def test_closed_loop_stops_after_too_many_errors() -> None:
    asked: list[int] = []

    async def failing(number: int) -> object:
        asked.append(number)
        await asyncio.sleep(0)  # the ten slots interleave, as real questions do
        raise RuntimeError(number)

    batch = await closed_loop(failing, range(1000), 10, max_errors=20)
    # it stopped asking: at most one more question per slot after the 20th error
    assert 20 <= len(asked) < 20 + 10, len(asked)
    assert batch.errors == 1000  # the questions never asked count as failed
    assert batch.latencies_s == []


def test_summarize_and_round_trip() -> None:
    summary = summarize("x", [0.1, 0.2, 0.3], 1.5, 1, cpu_s=0.4, broker_cpu_s=0.2)
    assert summary.queries == 4
    assert summary.qps == pytest.approx(2.0)
    assert summary.cpu_ms_per_query == pytest.approx(100.0)
    assert BenchResult.from_dict(summary.as_dict()) == summary


def test_rabbitmq_targets_at_zero_latency() -> None:
    results = [
        result(ragbus_name(BusKind.RABBITMQ), 90),
        result(AIOPIKA_NAME, 100),
        result(FASTSTREAM_NAME, 80),
    ]
    verdicts = evaluate(bus_of(results), results, BenchConfig(lm_latency_ms=0))
    assert [(v.threshold, round(v.ratio, 3), v.met) for v in verdicts] == [
        (1.0, 0.9, False),
        (1.5, 1.125, False),
    ]
    assert verdicts[1].shortfall == pytest.approx(1.5 / 1.125 - 1)


def test_rabbitmq_target_with_latency_is_the_raw_chain() -> None:
    results = [result(ragbus_name(BusKind.RABBITMQ), 475), result(AIOPIKA_NAME, 500)]
    (verdict,) = evaluate(BusKind.RABBITMQ, results, BenchConfig(lm_latency_ms=200))
    assert verdict.ratio == pytest.approx(0.95)
    assert verdict.met


def test_runs_with_errors_are_not_judged() -> None:
    results = [result(ragbus_name(BusKind.RABBITMQ), 90), result(AIOPIKA_NAME, 100, errors=3)]
    (verdict,) = evaluate(BusKind.RABBITMQ, results, BenchConfig())
    assert not verdict.judged
    assert not verdict.met
    assert "not judged" in verdict.describe()


def test_memory_bus_target_is_its_asyncio_anchor() -> None:
    results = [result(ragbus_name(BusKind.MEMORY), 90), result(MEMORY_ANCHOR_NAME, 100)]
    assert bus_of(results) is BusKind.MEMORY
    (verdict,) = evaluate(BusKind.MEMORY, results, BenchConfig(lm_latency_ms=200))
    assert (verdict.threshold, verdict.ratio, verdict.met) == (0.95, pytest.approx(0.9), False)


def test_splice_keeps_the_text_around_the_generated_section() -> None:
    run = Run(
        "RabbitMQ, LM latency 0 ms",
        "ragbus bench",
        BusKind.RABBITMQ,
        BenchConfig(),
        results=[result(ragbus_name(BusKind.RABBITMQ), 90), result(AIOPIKA_NAME, 100)],
    )
    section = render_section([run], {"CPUs (nproc)": "2"}, started="now", minutes=1.0)
    document = f"# Title\n\nintro\n\n{BEGIN}\nold\n{END}\n\n## Analysis\n\nkept\n"
    spliced = splice(document, section)
    assert spliced.startswith("# Title\n\nintro\n\n")
    assert spliced.endswith("\n\n## Analysis\n\nkept\n")
    assert "old" not in spliced
    assert "| ragbus (rabbitmq bus) | 90.0 |" in spliced
    missed = "ragbus / raw aio-pika chain >= 1 | 0.90 | **missed**: ragbus needs +11% q/s |"
    assert missed in spliced
    assert splice("# Only a title", section).endswith(f"{END}\n")


def test_namespaces_are_unique_and_list_ragbus_queues() -> None:
    first, second = Namespace.fresh("x"), Namespace.fresh("x")
    assert first != second
    queues = first.ragbus_queues()
    assert f"{first.prefix}.retrieve" in queues
    assert f"{first.prefix}.generate.dlq" in queues
    assert f"{first.prefix}.answers" in queues
    assert all(name.startswith(first.prefix + ".") for name in queues)


async def test_answer_waiters_match_by_correlation() -> None:
    waiters = AnswerWaiters()
    query = new_query(1)
    future = waiters.expect(query)
    waiters.deliver({"correlation_id": "someone else's"})
    assert not future.done()
    waiters.deliver(b'{"correlation_id": "%s"}' % str(query.id).encode())
    assert (await future)["correlation_id"] == str(query.id)


async def test_tracing_overhead_records_every_span_and_leaves_tracing_off() -> None:
    from opentelemetry import trace

    from ragbus.observability import tracing
    from tracing_overhead import measure

    figures, spans = await measure(queries=2, rounds=1)
    assert figures[0][0].startswith("off")
    assert all(micros > 0 for _, micros in figures)
    assert spans == 7 * (2 + 20)  # every question of the recorded way, warm-up included
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert not tracing.enabled()


def test_start_times_are_judged_on_the_median_run() -> None:
    quick = StartTime("ragbus --help", 0.3, "exit", exit_s=[0.2, 0.25, 0.9], cpu_s=[0.1] * 3)
    slow = StartTime("ragbus ask Q", 1.0, "first line", first_line_s=[1.2, 0.8, 1.1])
    failed = StartTime("ragbus schema", 0.3, "exit", exit_s=[0.1], errors=1)
    assert quick.met and not slow.met and not failed.met
    table = render_start_times([quick, slow, failed])
    assert "| `ragbus --help` | - | 0.25 | 0.20 | 0.10 | exit < 0.3 s | **met** |" in table
    assert table[3].endswith("| first line < 1 s | **missed** |")
    assert table[4].endswith("**not judged**: 1 run(s) failed |")
