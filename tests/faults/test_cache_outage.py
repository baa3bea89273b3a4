"""A cache outage degrades to no cache: questions are answered, the errors counted; when
the cache comes back, so do cache hits."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ragbus.bus.base import DeadLetterFilter
from ragbus.client import Answer, Client
from ragbus.pipelines.rag import STAGE_NAMES
from tests.amqp import Namespace
from tests.conftest import BusFactory, WorkersFactory
from tests.faults.support import QUESTION, bus_options, fault_settings, metric
from tests.lm_server import FakeLMServer
from tests.tcp_proxy import TcpProxy, start_proxy

pytestmark = pytest.mark.timeout(60)


def dead_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_questions_are_answered_while_the_cache_is_down(
    make_bus: BusFactory,
    bus_kind: str,
    tmp_path: Path,
    lm: FakeLMServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ragbus")
    settings = fault_settings(tmp_path, lm, cache_url=f"redis://127.0.0.1:{dead_port()}/0")
    bus = make_bus(**bus_options(bus_kind))
    questions = [f"{QUESTION} (case {number})" for number in range(3)]
    async with Client(settings, bus=bus, run_pipeline=True) as client:
        answers = [await client.ask(question, timeout=20) for question in questions]
        again = await client.ask(questions[0], timeout=20)  # no cache: the LM answers again
        errors = {
            stage: metric(client, "ragbus_cache_total", stage=stage, result="error")
            for stage in ("retrieve", "generate")
        }
        hits = metric(client, "ragbus_cache_total", stage="generate", result="hit")
        assert await bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter()) == []

    assert [a.answer.payload["question"] for a in answers] == questions
    assert again.text == answers[0].text
    assert lm.asked == [*questions, questions[0]]
    assert hits == 0
    assert all(count >= 4 for count in errors.values()), errors
    outage_warnings = [
        record for record in caplog.records if "going on without the cache" in record.getMessage()
    ]
    assert len(outage_warnings) == 1  # one warning, not one per operation


#: Counts ``ragbus_cache_total`` samples with a ``result``, of one stage or of all.
CacheCount = Callable[[str, str | None], Awaitable[float]]


async def through_a_redis_outage(
    proxy: TcpProxy, lm: FakeLMServer, ask: Callable[[str], Awaitable[Answer]], count: CacheCount
) -> None:
    """Ask before, during and after an outage of Redis (``proxy`` cut, then restored):
    every question is answered, without the cache during the outage; cache hits
    return after it, for what Redis kept and for what is new."""
    tag = uuid.uuid4().hex[:8]
    before, *during = [f"{QUESTION} (outage case {n}, {tag})" for n in range(4)]
    after = f"{QUESTION} (after the outage, {tag})"
    await ask(before)
    await ask(before)
    assert await count("hit", "generate") == 1
    assert await count("error", None) == 0

    proxy.cut()
    answers = [await ask(question) for question in during]
    again = await ask(during[0])  # nothing could be cached: the LM answers again
    assert await count("error", None) > 0
    assert await count("hit", "generate") == 1

    proxy.restore()
    hit = await ask(before)  # what Redis kept through the outage is served again ...
    assert await count("hit", "generate") == 2
    await ask(after)  # ... and new results are stored and served again
    await ask(after)
    assert await count("hit", "generate") == 3

    assert [a.answer.payload["question"] for a in answers] == during
    assert again.text == answers[0].text == f"The test LM answers: {during[0]}"
    assert hit.text == f"The test LM answers: {before}"
    assert lm.asked == [before, *during, during[0], after]


@pytest.mark.redis
async def test_redis_going_down_mid_run_and_coming_back(
    make_bus: BusFactory,
    bus_kind: str,
    tmp_path: Path,
    lm: FakeLMServer,
    redis_url: str,
    cache_namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis, behind a proxy the test cuts, goes down between two questions."""
    caplog.set_level(logging.WARNING, logger="ragbus")
    proxy = start_proxy(redis_url)
    settings = fault_settings(
        tmp_path, lm, cache_url=proxy.url_for(redis_url), cache_namespace=cache_namespace
    )
    try:
        bus = make_bus(**bus_options(bus_kind))
        async with Client(settings, bus=bus, run_pipeline=True) as client:

            async def ask(question: str) -> Answer:
                return await client.ask(question, timeout=20)

            async def count(result: str, stage: str | None) -> float:
                stages = [stage] if stage else ["retrieve", "generate"]
                return sum(
                    metric(client, "ragbus_cache_total", stage=name, result=result)
                    for name in stages
                )

            await through_a_redis_outage(proxy, lm, ask, count)
            assert await bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter()) == []
    finally:
        proxy.stop()
    warnings = [r for r in caplog.records if "going on without the cache" in r.getMessage()]
    assert len(warnings) == 1  # one warning for the outage, not one per operation


@pytest.mark.slow
@pytest.mark.rabbitmq
@pytest.mark.redis
async def test_worker_processes_ride_out_a_redis_outage(
    amqp_url: str,
    make_workers: WorkersFactory,
    tmp_path: Path,
    lm: FakeLMServer,
    redis_url: str,
    cache_namespace: str,
) -> None:
    """The same outage with a worker process per stage, sharing Redis through the proxy."""
    proxy = start_proxy(redis_url)
    namespace = Namespace(amqp_url)
    settings = fault_settings(
        tmp_path, lm, cache_url=proxy.url_for(redis_url), cache_namespace=cache_namespace
    )
    workers = make_workers(settings, namespace)
    try:
        retrieve, generate = await asyncio.gather(
            workers.start("retrieve", name="retrieve"), workers.start("generate", name="generate")
        )
        processes = {"retrieve": retrieve, "generate": generate}
        async with Client(settings, bus=namespace.make(), run_pipeline=False) as asker:

            async def ask(question: str) -> Answer:
                return await asker.ask(question, timeout=20)

            async def count(result: str, stage: str | None) -> float:
                chosen = [processes[stage]] if stage else list(processes.values())
                samples = [await process.metrics() for process in chosen]
                return sum(
                    metrics.value("ragbus_cache_total", result=result) for metrics in samples
                )

            await through_a_redis_outage(proxy, lm, ask, count)
        for process in processes.values():
            assert await process.stop() == 0, process.describe()
    finally:
        proxy.stop()
    assert "going on without the cache" in retrieve.log + generate.log
