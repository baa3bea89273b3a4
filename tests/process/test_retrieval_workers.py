"""Hybrid retrieval served by worker processes on RabbitMQ, as users deploy it: an index
built with ``ragbus index`` and an embedding model over HTTP; the retrieve workers'
breaker is the embedding model's (``embedder``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragbus.retrieval.embedder import Embedder
from ragbus_bench.recall import index_labelled
from tests.lm_server import FakeLMServer
from tests.process.workers import Workers

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

MODEL = "openai/stand-in-embeddings"


async def test_hybrid_retrieval_in_worker_processes(
    workers: Workers, lm: FakeLMServer, tmp_path: Path
) -> None:
    await index_labelled(tmp_path / "index", Embedder(MODEL, api_base=lm.api_base, api_key="k"))
    embeddings = {
        "corpus": str(tmp_path / "index"),
        "retriever": "hybrid",
        "embed_model": MODEL,
        "embed_api_base": lm.api_base,
        "embed_api_key": "sk-stand-in-key",
    }
    retrieve = await workers.start("retrieve", name="retrieve", **embeddings)
    await workers.start("generate", name="generate")

    asked = await workers.run("ask", "--json", "Can my kids see a doctor at work?", timeout=90)

    assert asked.code == 0, asked.stderr + workers.report()
    sources = [source["doc_id"] for source in json.loads(asked.stdout)["payload"]["sources"]]
    assert sources[0] == "clinic-youngsters", sources
    assert lm.embedded[-1] == "Can my kids see a doctor at work?"  # the worker embedded it
    metrics = await retrieve.metrics()
    assert metrics.has("ragbus_breaker_state", dependency="embedder")
    assert not metrics.has("ragbus_breaker_state", dependency="retriever")
    assert "sk-stand-in-key" not in (workers.directory / "retrieve.log").read_text()
