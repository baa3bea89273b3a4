"""An embedding model outage in the middle of a run of hybrid retrieval: the retrieve
stage depends on ``embedder``, so its breaker opens and pauses the stage, and every
question is answered once the model is back; nothing reaches the dead-letter queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ragbus.bus.base import DeadLetterFilter
from ragbus.client import Answer, Client
from ragbus.pipelines.rag import STAGE_NAMES
from ragbus.retrieval.embedder import Embedder
from ragbus.runtime.circuit import BreakerState
from ragbus_bench.recall import index_labelled, questions
from tests.conftest import BusFactory
from tests.faults.support import bus_options, fault_settings, metric
from tests.lm_server import FakeLMServer
from tests.polling import wait_until

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

#: How long the embedding model stays down.
OUTAGE_S = 2.0
MODEL = "openai/stand-in-embeddings"


async def test_an_embedder_outage_pauses_retrieval_and_every_question_is_answered(
    make_bus: BusFactory, bus_kind: str, tmp_path: Path, lm: FakeLMServer
) -> None:
    embedder = Embedder(MODEL, api_base=lm.api_base, api_key="test")
    index = await index_labelled(tmp_path / "index", embedder)
    settings = fault_settings(
        tmp_path,
        lm,
        corpus=tmp_path / "index",
        retriever="hybrid",
        embed_model=MODEL,
        embed_api_base=lm.api_base,
        embed_api_key="test",
        concurrency=4,
        max_attempts=5,
        cache_enabled=False,
    )
    asked = [question.text for question in questions()] * 2
    bus = make_bus(**bus_options(bus_kind))
    answered: list[Answer] = []

    async with Client(settings, bus=bus, run_pipeline=True) as client:

        async def ask(question: str) -> Answer:
            answer = await client.ask(question, timeout=60)
            answered.append(answer)
            return answer

        lm.set_embeddings(mode="error")  # down from the start: the breaker must open
        tasks = [asyncio.create_task(ask(question)) for question in asked]
        try:
            await wait_until(
                lambda: (
                    metric(client, "ragbus_breaker_state", dependency="embedder")
                    == BreakerState.OPEN
                ),
                what="the embedder breaker to open",
                timeout=15,
            )
            assert answered == []
            await asyncio.sleep(OUTAGE_S)  # the outage lasts, whatever the breaker does
            calls_in_outage = lm.embedding_calls
            lm.set_embeddings(mode="ok")
            answers = await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        finally:
            for task in tasks:
                task.cancel()
        assert await bus.dead_letters(STAGE_NAMES).select(DeadLetterFilter()) == []
        assert metric(client, "ragbus_failed_total", stage="retrieve", failure_class="breaker_open")
        assert metric(client, "ragbus_breaker_state", dependency="embedder") == BreakerState.CLOSED

    assert [answer.answer.payload["question"] for answer in answers] == asked
    assert all(answer.answer.payload["sources"] for answer in answers)
    # the breaker, not the retries, took the outage: the model was spared most calls
    assert calls_in_outage < len(asked), f"{calls_in_outage} embedding calls in the outage"
    assert len(index) == 30
