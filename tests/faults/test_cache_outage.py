"""A cache outage degrades to no cache: questions are answered, the errors counted; when
the cache comes back, so do cache hits."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from ragbus.bus.base import DeadLetterFilter
from ragbus.client import Client
from tests.amqp import Namespace
from tests.conftest import BusFactory, WorkersFactory
from tests.faults.support import QUESTION, bus_options, fault_settings, metric
from tests.lm_server import FakeLMServer
from tests.tcp_proxy import start_proxy

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
        assert await bus.list_dead_letters(DeadLetterFilter()) == []

    assert [a.answer.payload["question"] for a in answers] == questions
    assert again.text == answers[0].text
    assert lm.asked == [*questions, questions[0]]
    assert hits == 0
    assert all(count >= 4 for count in errors.values()), errors
    outage_warnings = [
        record for record in caplog.records if "going on without the cache" in record.getMessage()
    ]
    assert len(outage_warnings) == 1  # one warning, not one per operation


def cache_count(client: Client, result: str) -> float:
    """``ragbus_cache_total`` with ``result``, over both stages of the client's runtime."""
    return sum(
        metric(client, "ragbus_cache_total", stage=stage, result=result)
        for stage in ("retrieve", "generate")
    )


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
    """Redis (behind a proxy the test cuts) goes down between two questions: questions
    are answered without the cache, then cache hits return once it is back."""
    caplog.set_level(logging.WARNING, logger="ragbus")
    proxy = start_proxy(redis_url)
    settings = fault_settings(
        tmp_path, lm, cache_url=proxy.url_for(redis_url), cache_namespace=cache_namespace
    )
    before, *during = [f"{QUESTION} (outage case {n}, {cache_namespace})" for n in range(4)]
    after = f"{QUESTION} (after the outage, {cache_namespace})"
    try:
        async with Client(settings, bus=make_bus(**bus_options(bus_kind)), run_pipeline=True) as c:
            await c.ask(before, timeout=20)
            await c.ask(before, timeout=20)
            assert metric(c, "ragbus_cache_total", stage="generate", result="hit") == 1
            assert cache_count(c, "error") == 0

            proxy.cut()
            answers = [await c.ask(question, timeout=20) for question in during]
            again = await c.ask(during[0], timeout=20)  # nothing could be cached: the LM again
            assert cache_count(c, "error") > 0
            assert metric(c, "ragbus_cache_total", stage="generate", result="hit") == 1

            proxy.restore()
            # what Redis kept through the outage is served again ...
            hit = await c.ask(before, timeout=20)
            assert metric(c, "ragbus_cache_total", stage="generate", result="hit") == 2
            # ... and new results are stored and served again
            await c.ask(after, timeout=20)
            await c.ask(after, timeout=20)
            assert metric(c, "ragbus_cache_total", stage="generate", result="hit") == 3
            assert await c.bus.list_dead_letters(DeadLetterFilter()) == []
    finally:
        proxy.stop()

    assert [a.answer.payload["question"] for a in answers] == during
    assert again.text == answers[0].text == f"The test LM answers: {during[0]}"
    assert hit.text == f"The test LM answers: {before}"
    assert lm.asked == [before, *during, during[0], after]
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
    before, *during = [f"{QUESTION} (outage case {n}, {cache_namespace})" for n in range(4)]
    after = f"{QUESTION} (after the outage, {cache_namespace})"

    async def count(result: str, *stages: str) -> float:
        processes = {"retrieve": retrieve, "generate": generate}
        samples = [await processes[stage].metrics() for stage in stages or processes]
        return sum(metrics.value("ragbus_cache_total", result=result) for metrics in samples)

    try:
        retrieve, generate = await asyncio.gather(
            workers.start("retrieve", name="retrieve"), workers.start("generate", name="generate")
        )
        async with Client(settings, bus=namespace.make(), run_pipeline=False) as asker:
            await asker.ask(before, timeout=20)
            await asker.ask(before, timeout=20)
            assert await count("hit", "generate") == 1

            proxy.cut()
            answers = [await asker.ask(question, timeout=20) for question in during]
            again = await asker.ask(during[0], timeout=20)
            assert await count("error") > 0
            assert await count("hit", "generate") == 1

            proxy.restore()
            hit = await asker.ask(before, timeout=20)
            assert await count("hit", "generate") == 2
            await asker.ask(after, timeout=20)
            await asker.ask(after, timeout=20)
            assert await count("hit", "generate") == 3
        for process in (retrieve, generate):
            assert await process.stop() == 0, process.describe()
    finally:
        proxy.stop()

    assert [a.answer.payload["question"] for a in answers] == during
    assert again.text == answers[0].text == f"The test LM answers: {during[0]}"
    assert hit.text == f"The test LM answers: {before}"
    assert lm.asked == [before, *during, during[0], after]
    assert "going on without the cache" in retrieve.log + generate.log
