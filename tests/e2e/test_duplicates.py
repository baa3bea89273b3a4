"""Exactly-once effect: an event delivered again after its stage finished it is dropped
by its id (the processed-id set), and counted; with ``dedup`` off it is handled again."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from ragbus.client import Client
from ragbus.config import Settings
from ragbus.events import Envelope, new_event
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.pipelines.rag import pipeline as rag
from ragbus.runtime.stage import Handler
from tests.conftest import BusFactory
from tests.polling import wait_until


def counted(
    name: str, calls: Counter[str], outputs: list[Envelope]
) -> Callable[[Handler], Handler]:
    """Wraps stage ``name``'s handler: counts its calls in ``calls[name]`` and adds what it
    returns to ``outputs``."""

    def wrap(handler: Handler) -> Handler:
        async def counting(event: Envelope) -> list[Envelope]:
            calls[name] += 1
            result: list[Envelope] = await handler(event)
            outputs.extend(result)
            return result

        return counting

    return wrap


def sample(client: Client, name: str, stage: str) -> float:
    assert client.runtime is not None
    value = client.runtime.metrics.registry.get_sample_value(name, {"stage": stage})
    return 0.0 if value is None else value


@pytest.mark.parametrize("dedup", [True, False], ids=["dedup", "no-dedup"])
async def test_an_event_delivered_twice_is_handled_once(
    make_bus: BusFactory, settings: Settings, dedup: bool
) -> None:
    # no result cache: only the processed-id set may stop the second delivery
    settings = settings.model_copy(update={"cache_enabled": False, "dedup": dedup})
    calls: Counter[str] = Counter()
    outputs: list[Envelope] = []
    app = rag
    for name in rag.stage_names:
        app = app.wrap_stage(name, counted(name, calls, outputs))
    query = new_event(
        RagEvent.QUERY_RECEIVED, QueryReceived(question="What does a dead letter record?")
    )
    async with Client(settings, app=app, bus=make_bus(), run_pipeline=True) as client:

        def handled(stage: str) -> float:
            return sample(client, "ragbus_processed_total", stage)

        def dropped() -> float:
            return sample(client, "ragbus_duplicates_dropped_total", "retrieve")

        await client.publish(query)
        await wait_until(lambda: handled("generate") == 1, what="the first delivery answered")
        await client.publish(query)  # the same envelope again, as a redelivery brings it
        await wait_until(
            lambda: handled("retrieve") + dropped() == 2,
            what="the second delivery handled or dropped",
        )
        if not dedup:
            await wait_until(lambda: handled("generate") == 2, what="the second answer")
        duplicates = dropped()

    answers = [event for event in outputs if event.type == RagEvent.ANSWER_GENERATED]
    if dedup:
        assert calls == {"retrieve": 1, "generate": 1}
        assert duplicates == 1
        assert len(answers) == 1
    else:
        assert calls == {"retrieve": 2, "generate": 2}
        assert duplicates == 0
        # handled again, the redelivery yields the same answer id: consumers can tell
        assert len(answers) == 2 and answers[0].id == answers[1].id
