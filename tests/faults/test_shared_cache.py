"""The Redis cache is shared by worker processes: an answer computed by one worker is
served by another without calling the LM, and identical questions in flight in two
processes make one LM call (the Redis lease)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ragbus.client import Client
from ragbus.config import Settings
from ragbus.events import Envelope, new_event, utc_now
from ragbus.payloads.rag import DocumentsRetrieved, QueryReceived, RagEvent
from ragbus.runtime.cache import SharedCache
from ragbus.runtime.guards.cache import ResultCacheGuard
from ragbus.runtime.guards.deadline import EventExpired
from ragbus.runtime.stage import Stage
from tests.amqp import Namespace
from tests.conftest import BusFactory, WorkersFactory
from tests.faults.support import QUESTION, fault_settings, metric
from tests.lm_server import FakeLMServer
from tests.polling import wait_until
from tests.process.workers import Metrics, Workers

pytestmark = [pytest.mark.timeout(90), pytest.mark.redis]


def shared_settings(
    tmp_path: Path, lm: FakeLMServer, redis_url: str, namespace: str, **overrides: object
) -> Settings:
    return fault_settings(tmp_path, lm, cache_url=redis_url, cache_namespace=namespace, **overrides)


async def ask_in_new_process(workers: Workers, question: str) -> Envelope:
    """``ragbus ask --json`` in a new process (on the memory bus it runs the whole
    pipeline); its answer event."""
    asked = await workers.run("ask", question, "--json", "--timeout", "30")
    assert asked.code == 0, asked.stderr
    return Envelope.model_validate_json(asked.stdout)


@pytest.mark.slow  # starts a second ragbus process
async def test_a_second_worker_process_answers_from_the_shared_cache(
    make_bus: BusFactory,
    bus_namespace: Namespace | None,
    make_workers: WorkersFactory,
    tmp_path: Path,
    lm: FakeLMServer,
    redis_url: str,
    cache_namespace: str,
) -> None:
    settings = shared_settings(tmp_path, lm, redis_url, cache_namespace)
    question = f"{QUESTION} [{uuid.uuid4().hex[:8]}]"
    async with Client(settings, bus=make_bus(), run_pipeline=True) as first_worker:
        first = await first_worker.ask(question, timeout=20)
    assert lm.calls == 1  # the LM really is asked over HTTP
    assert first.text == f"The test LM answers: {question}"

    processes = make_workers(settings, bus_namespace)
    if bus_namespace is None:
        # the memory bus lives in one process: the second process runs the whole pipeline
        second = await ask_in_new_process(processes, question)
    else:
        worker = await processes.start()
        async with Client(settings, bus=make_bus(), run_pipeline=False) as asker:
            second = (await asker.ask(question, timeout=20)).answer
        served = Metrics({}, {})

        async def finished() -> bool:  # counted once the input is acked, after the answer
            nonlocal served
            served = await worker.metrics()
            return served.value("ragbus_processed_total", stage="generate") == 1

        await wait_until(finished, what="the worker to count the answered event")
        assert await worker.stop() == 0
        # the other process served both stages from the cache
        for stage in ("retrieve", "generate"):
            assert served.value("ragbus_cache_total", stage=stage, result="hit") == 1
            assert served.value("ragbus_processed_total", stage=stage) == 1

    assert lm.calls == 1, "the second process called the LM"
    assert second.type == RagEvent.ANSWER_GENERATED
    assert second.payload["answer"] == first.text
    assert second.payload["model"] == "openai/test-model"
    assert second.correlation_id != first.query.id  # its own question's answer
    assert second.id != first.answer.id


@pytest.mark.slow  # starts a second ragbus process
async def test_identical_questions_in_two_processes_make_one_lm_call(
    make_bus: BusFactory,
    bus_namespace: Namespace | None,
    make_workers: WorkersFactory,
    tmp_path: Path,
    lm: FakeLMServer,
    redis_url: str,
    cache_namespace: str,
) -> None:
    """One process holds the lease and waits for the LM; the other, asked the same
    question meanwhile, waits for its result instead of calling the LM itself."""
    settings = shared_settings(tmp_path, lm, redis_url, cache_namespace)
    question = f"{QUESTION} [{uuid.uuid4().hex[:8]}]"
    lm.set(mode="hang")  # the first process's call waits until the test lets it answer
    processes = make_workers(settings, bus_namespace)

    async def second_process_asks() -> None:
        async with Client(settings, bus=make_bus(), run_pipeline=True) as other:
            asked = asyncio.create_task(other.ask(question, timeout=30))
            # its generate stage is waiting for the lease holder's result ...
            await wait_until(
                lambda: metric(other, "ragbus_cache_total", stage="generate", result="miss") == 1,
                what="this process's cache miss",
            )
            await wait_until(
                lambda: metric(other, "ragbus_in_flight", stage="generate") == 1,
                what="this process's generate stage waiting",
            )
            assert lm.calls == 1
            lm.set()  # ... which comes now
            answer = await asyncio.wait_for(asked, 20)
            assert answer.text == f"The test LM answers: {question}"
            assert metric(other, "ragbus_cache_total", stage="generate", result="coalesced") == 1

    if bus_namespace is None:
        first = asyncio.create_task(ask_in_new_process(processes, question))
        await wait_until(
            lambda: lm.calls == 1 or first.done(), what="the other process's LM call", timeout=30
        )
        await second_process_asks()
        answer = await asyncio.wait_for(first, 30)
        assert answer.payload["answer"] == f"The test LM answers: {question}"
    else:
        # concurrency 1: the worker has no room for a second event while it waits on the
        # LM, so the broker hands the second question to this process's stages
        worker = await processes.start(concurrency=1)
        async with Client(settings, bus=make_bus(), run_pipeline=False) as asker:
            asked = asyncio.create_task(asker.ask(question, timeout=30))
            await wait_until(
                lambda: lm.calls == 1 or asked.done(), what="the worker's LM call", timeout=20
            )
            await second_process_asks()
            answer = (await asyncio.wait_for(asked, 20)).answer
            assert answer.payload["answer"] == f"The test LM answers: {question}"
        assert await worker.stop() == 0
    assert lm.calls == 1


class _StaleReads(SharedCache):
    """A process's view of the cache whose next result read is overtaken by the other
    process: the read misses, and the lease holder stores its result and lets go of its
    lease before the miss comes back."""

    def __init__(self, url: str, namespace: str, holder_done: asyncio.Event) -> None:
        super().__init__(url, namespace=namespace)
        self.holder_done = holder_done
        self.armed = False

    async def get(self, key: str, *, stage: str = "") -> Any | None:
        value = await super().get(key, stage=stage)
        if self.armed and key.startswith("result:"):
            self.armed = False
            await self.holder_done.wait()
        return value


async def test_a_lease_taken_after_the_holder_finished_uses_its_result(
    redis_url: str, cache_namespace: str
) -> None:
    """Regression: a waiter that saw no result and then no lease took the lease and
    called the handler again, although the holder had just stored the result."""
    calls: list[str] = []
    release = asyncio.Event()
    holder_done = asyncio.Event()

    async def handler(event: Envelope) -> list[Envelope]:
        calls.append(event.payload["question"])
        await release.wait()
        payload = DocumentsRetrieved(question=event.payload["question"], passages=[])
        return [event.derive(RagEvent.DOCUMENTS_RETRIEVED, payload)]

    stage = Stage(name="retrieve", consumes=(RagEvent.QUERY_RECEIVED,), handler=handler)
    holder_cache = SharedCache(redis_url, namespace=cache_namespace)
    waiter_cache = _StaleReads(redis_url, cache_namespace, holder_done)
    holder = ResultCacheGuard(holder_cache, owner="holder", poll_s=0.01)
    waiter = ResultCacheGuard(waiter_cache, owner="waiter", poll_s=0.01)
    question = f"lease race {uuid.uuid4().hex[:8]}"
    try:
        holding = asyncio.create_task(holder(stage, _query(question), handler))
        await wait_until(lambda: calls == [question], what="the holder's handler call")
        waiter_cache.armed = True
        waiting = asyncio.create_task(waiter(stage, _query(question), handler))
        await wait_until(lambda: not waiter_cache.armed, what="the waiter's read, a miss")
        release.set()
        await holding
        holder_done.set()
        [output] = await asyncio.wait_for(waiting, 5)
    finally:
        release.set()
        holder_done.set()
        await holder_cache.close()
        await waiter_cache.close()
    assert calls == [question], "the handler ran twice for one input"
    assert output.payload["question"] == question


def _query(question: str, *, deadline: datetime | None = None) -> Envelope:
    return new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=question), deadline=deadline)


async def test_a_lease_waiter_expires_at_its_own_deadline(
    redis_url: str, cache_namespace: str
) -> None:
    """A process waiting for another's lease gives up when its event's deadline passes
    (``expired``), not when the lease ends."""
    calls: list[str] = []
    release = asyncio.Event()

    async def handler(event: Envelope) -> list[Envelope]:
        calls.append(event.payload["question"])
        await release.wait()
        return []

    stage = Stage(name="retrieve", consumes=(RagEvent.QUERY_RECEIVED,), handler=handler)
    holder_cache = SharedCache(redis_url, namespace=cache_namespace)
    waiter_cache = SharedCache(redis_url, namespace=cache_namespace)
    holder = ResultCacheGuard(holder_cache, owner="holder", poll_s=0.01)
    waiter = ResultCacheGuard(waiter_cache, owner="waiter", poll_s=0.01)
    question = f"lease deadline {uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    try:
        holding = asyncio.create_task(holder(stage, _query(question), handler))
        await wait_until(lambda: calls == [question], what="the holder's handler call")
        started = loop.time()
        hurried = _query(question, deadline=utc_now() + timedelta(seconds=1))
        with pytest.raises(EventExpired):
            await asyncio.wait_for(waiter(stage, hurried, handler), 20)
        assert loop.time() - started < 10  # its deadline, not the 30 s lease
        release.set()
        await asyncio.wait_for(holding, 5)
    finally:
        release.set()
        await holder_cache.close()
        await waiter_cache.close()
    assert calls == [question]
