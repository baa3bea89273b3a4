"""A generate worker killed while it holds coalescing leases delays its questions by
seconds, not by a fixed lease time: its leases in Redis stop being renewed and end, and
the worker that gets the redelivered questions answers them.

Real processes on RabbitMQ and Redis, and a real HTTP LM (the stand-in server), made to
hang so that the killed worker's calls are in flight when it dies.
"""

from __future__ import annotations

import time

import pytest

from ragbus.events import new_event
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.pipelines.rag import pipeline as rag
from tests.amqp import Namespace
from tests.lm_server import FakeLMServer
from tests.polling import wait_until
from tests.process.workers import AnswerLog, Workers
from tests.redis_keys import redis_client

pytestmark = [pytest.mark.rabbitmq, pytest.mark.redis, pytest.mark.slow]

QUESTIONS = 4
#: The bound this test holds the runtime to: answered within 5 s of the redelivery.
WITHIN_S = 5.0


async def lease_count(redis_url: str, prefix: str) -> int:
    async with redis_client(redis_url) as client:
        return len([key async for key in client.scan_iter(match=f"{prefix}lease:*")])


@pytest.mark.timeout(180)
async def test_questions_of_a_killed_lease_holder_are_answered_within_seconds_of_redelivery(
    namespace: Namespace,
    workers: Workers,
    lm: FakeLMServer,
    redis_url: str,
    cache_namespace: str,
) -> None:
    settings = {
        "cache_url": redis_url,
        "cache_namespace": cache_namespace,
        "lm_model": "openai/test-model",
        "lm_api_base": lm.api_base,
        "lm_api_key": "test",
    }
    observer = namespace.make()
    await observer.connect()
    for sink, types in ((s.name, s.event_types) for s in rag.sinks.values()):
        await observer.declare_sink(sink, types)
    answers = AnswerLog()
    observer.subscribe(
        "observer", [RagEvent.ANSWER_GENERATED], answers, concurrency=64, ephemeral=True
    )
    await observer.start()
    try:
        await workers.start("retrieve", name="retrieve", **settings)
        holder = await workers.start("generate", name="holder", concurrency=16, **settings)
        lm.set(mode="hang")
        sent = [
            new_event(
                RagEvent.QUERY_RECEIVED,
                QueryReceived(question=f"How does ragbus handle a failed event? ({n})"),
            )
            for n in range(QUESTIONS)
        ]
        for query in sent:
            await observer.publish(query)
        # the holder calls the LM for each question (and hangs there), holding a lease each
        await wait_until(
            lambda: lm.calls == QUESTIONS,
            what="the holder calling the LM for every question",
            timeout=60,
            report=workers.report,
        )
        assert await lease_count(redis_url, cache_namespace) == QUESTIONS
        successor = await workers.start("generate", name="successor", **settings)

        holder.kill()
        killed_at = time.monotonic()
        lm.set()  # the LM answers again: only the leases stand in the successor's way

        async def redelivered() -> bool:
            metrics = await successor.metrics()
            return metrics.value("ragbus_in_flight", stage="generate") == QUESTIONS

        await wait_until(
            redelivered,
            what="every question redelivered to the successor",
            timeout=30,
            report=workers.report,
        )
        redelivered_at = time.monotonic()
        await answers.wait_for((q.id for q in sent), timeout=30, report=workers.report)
        answered_at = time.monotonic()
    finally:
        await observer.close()

    took = answered_at - redelivered_at
    print(
        f"redelivered {redelivered_at - killed_at:.2f}s after the kill; "
        f"all {QUESTIONS} answered {took:.2f}s after the redelivery"
    )
    assert took < WITHIN_S, f"answered {took:.1f}s after the redelivery\n{workers.report()}"
    # one more LM call per question, by the successor, once the holder's lease ended
    assert lm.calls == 2 * QUESTIONS
    assert all(len(answers.distinct_answer_ids(q.id)) == 1 for q in sent)
