"""RAGBUS_LM_RPM across worker processes sharing Redis, counted at the LM.

Three ``ragbus worker`` processes on RabbitMQ get three minutes' worth of questions;
the stand-in LM notes the time of every call it receives.
"""

from __future__ import annotations

import bisect

import pytest

from ragbus.events import new_event
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.pipelines.rag import pipeline as rag
from tests.amqp import Namespace
from tests.lm_server import FakeLMServer
from tests.polling import wait_until
from tests.process.workers import Workers

RPM = 120


def most_in_any_minute(times: list[float]) -> int:
    """The most of ``times`` that fall in one 60 s span."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + 60.0) - i for i, t in enumerate(ordered)), default=0
    )


def test_most_in_any_minute() -> None:
    assert most_in_any_minute([0, 1, 59.9, 60, 61, 119.9]) == 3
    assert most_in_any_minute([0, 1, 2, 59.9, 60]) == 4
    assert most_in_any_minute([]) == 0


@pytest.mark.slow
@pytest.mark.rabbitmq
@pytest.mark.redis
@pytest.mark.timeout(180)
async def test_three_workers_make_at_most_rpm_calls_in_any_minute(
    namespace: Namespace,
    workers: Workers,
    lm: FakeLMServer,
    redis_url: str,
    cache_namespace: str,
) -> None:
    settings = {
        "cache_url": redis_url,
        "cache_namespace": cache_namespace,
        "cache_enabled": False,
        "lm_model": "openai/test-model",
        "lm_api_base": lm.api_base,
        "lm_api_key": "test",
        "lm_rpm": RPM,
        "concurrency": 32,
    }
    await workers.start_many(3, **settings)
    publisher = namespace.make()
    await publisher.connect()
    for sink in rag.sinks.values():  # the answers stay routable, so none is redelivered
        await publisher.declare_sink(sink.name, sink.event_types)
    try:
        for n in range(3 * RPM):  # far more than a minute's quota
            question = f"How does ragbus handle a failed event? ({n})"
            await publisher.publish(
                new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=question))
            )
        await wait_until(lambda: lm.calls > 0, what="a first LM call", timeout=30)
        first = lm.call_times[0]
        await wait_until(
            lambda: lm.call_times[-1] - first >= 75,
            what="75 s of LM calls",
            timeout=120,
            interval=1.0,
            report=workers.report,
        )
    finally:
        await publisher.close()
    times = list(lm.call_times)
    in_first_minute = sum(t < first + 60 for t in times)
    print(
        f"{len(times)} calls; {in_first_minute} in the first minute; "
        f"at most {most_in_any_minute(times)} in any minute"
    )
    assert most_in_any_minute(times) <= RPM
    assert in_first_minute >= 100
