"""How much a busy retrieve stage holds up the other stages of its process: the latency
of the generate stage's events while retrieval searches a 100,000-passage corpus, with
the search in the event loop (before) and in the search threads (after), in one run.

    .venv/bin/python bench/retrieval_blocking.py                  # about two minutes
    .venv/bin/python bench/retrieval_blocking.py --passages 20000 --seconds 4

The whole RAG pipeline runs in this process on the memory bus (cache and deduplication
off, the offline LM). A synthetic corpus of ``--passages`` passages of 60 words
(Zipf-distributed over 20,000 words) is indexed for BM25, and given random unit vectors
of 384 dimensions for dense search (questions are embedded in process: no network, so
only the search itself loads the process). In each phase, ``--askers`` tasks ask
questions back to back (retrieval busy), while a probe publishes a ready
``documents_retrieved`` event every 20 ms straight to the generate stage and times it
until its ``answer_generated`` arrives. The askers' own questions are answered at once
by the generate stage, without the LM: so the probe measures what the searches do to
the event loop, not the generate work that more answers would add. Phases: no
retrieval load, then BM25 and dense, each with the search in the loop and off it. It
prints a Markdown table of the probe's p50 and p99 and the questions answered per
second.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import time
from collections.abc import Sequence
from typing import Final

import numpy as np

from ragbus.client import Client
from ragbus.config import load_settings
from ragbus.events import Envelope, new_event
from ragbus.handlers.retrieve import RetrieveHandler
from ragbus.payloads.rag import (
    AnswerGenerated,
    DocumentsRetrieved,
    Passage,
    QueryReceived,
    RagEvent,
)
from ragbus.pipeline import StageCallable
from ragbus.pipelines.rag import GENERATE, RETRIEVE, pipeline
from ragbus.retrieval import SearchIndex
from ragbus.retrieval.bm25 import Bm25Retriever
from ragbus.retrieval.corpus import CorpusPassage
from ragbus.retrieval.dense import DenseRetriever
from ragbus.retrieval.embedder import Embedder, QueryEmbeddings
from ragbus.retrieval.retriever import Retriever
from ragbus.retrieval.saved import Embeddings
from ragbus.retrieval.vectors import Matrix, normalized

DIMENSIONS: Final = 384
PROBE_EVERY_S: Final = 0.02
PROBE_QUESTION: Final = "What does the cache keep?"
WORDS: Final = 20_000


class HashedEmbedder(Embedder):
    """Embeds in process: a random unit vector seeded by the text (no network)."""

    async def embed(self, texts: Sequence[str], *, progress: object = None) -> Matrix:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
            rows.append(np.random.default_rng(seed).standard_normal(DIMENSIONS))
        return normalized(rows)


def answer_askers_at_once(generate: StageCallable) -> StageCallable:
    """The generate handler for the probe's events; an at-once answer for the others."""

    async def handle(event: Envelope) -> list[Envelope]:
        question = event.payload_as(DocumentsRetrieved).question
        if question == PROBE_QUESTION:
            return list(await generate(event))
        skipped = AnswerGenerated(question=question, answer="-", model="none")
        return [event.derive(RagEvent.ANSWER_GENERATED, skipped)]

    return handle


def corpus(size: int, generator: np.random.Generator) -> tuple[list[CorpusPassage], list[str]]:
    """``size`` passages of 60 Zipf-distributed made-up words, and the vocabulary."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocabulary = ["".join(generator.choice(letters, 7)) for _ in range(WORDS)]
    ranks = np.minimum(generator.zipf(1.2, size=(size, 60)), WORDS) - 1
    passages = [
        CorpusPassage(f"doc-{number}", "", " ".join(vocabulary[rank] for rank in row))
        for number, row in enumerate(ranks)
    ]
    return passages, vocabulary


async def phase(
    retriever: Retriever | None, seconds: float, askers: int, words: list[str]
) -> tuple[list[float], int]:
    """Probe latencies (ms) and questions answered while ``askers`` keep ``retriever``
    busy (no load when None)."""
    settings = load_settings(cache_enabled=False, dedup=False, concurrency=16)
    app = pipeline.wrap_stage(GENERATE, answer_askers_at_once)
    if retriever is not None:
        app = app.with_stage(RETRIEVE, build=lambda _: RetrieveHandler(retriever))
    passages = [
        Passage(doc_id=f"p{i}", text=f"Passage {i} says that the cache keeps results.", score=1.0)
        for i in range(4)
    ]
    latencies: list[float] = []
    answered = 0
    stop = asyncio.Event()
    async with Client(settings, app=app, follow_progress=False) as client:

        async def ask(number: int) -> None:
            nonlocal answered
            generator = np.random.default_rng(number)
            while not stop.is_set():
                question = " ".join(generator.choice(words, 4))
                await client.ask(question, timeout=120)
                answered += 1

        async def probe() -> None:
            while not stop.is_set():
                query = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question="cache?"))
                event = query.derive(
                    RagEvent.DOCUMENTS_RETRIEVED,
                    DocumentsRetrieved(question=PROBE_QUESTION, passages=passages),
                )
                began = time.perf_counter()
                await client.request(event, timeout=120)
                latencies.append((time.perf_counter() - began) * 1000)
                await asyncio.sleep(PROBE_EVERY_S)

        tasks = [asyncio.create_task(ask(n)) for n in range(askers if retriever else 0)]
        tasks.append(asyncio.create_task(probe()))
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
    return latencies, answered


def _p(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--askers", type=int, default=8, help="questions in flight")
    arguments = parser.parse_args()
    generator = np.random.default_rng(3)
    began = time.perf_counter()
    passages, vocabulary = corpus(arguments.passages, generator)
    index = SearchIndex.build(passages)
    vectors = normalized(generator.standard_normal((len(passages), DIMENSIONS)))
    print(f"built {len(index):,} passages in {time.perf_counter() - began:.1f} s")
    embeddings = Embeddings("local/hashed", vectors)
    embedder = HashedEmbedder("local/hashed")

    def dense(off_loop: bool) -> DenseRetriever:
        queries = QueryEmbeddings(embedder)
        return DenseRetriever(passages, embeddings, queries, index.fingerprint, off_loop=off_loop)

    # common words: every question matches many passages, as real questions do
    words = vocabulary[10:400]
    phases: list[tuple[str, Retriever | None]] = [
        ("no retrieval load", None),
        ("BM25, search in the event loop", Bm25Retriever(index, off_loop=False)),
        ("BM25, search in a thread", Bm25Retriever(index)),
        ("dense, search in the event loop", dense(False)),
        ("dense, search in a thread", dense(True)),
    ]
    print(
        f"\n{arguments.passages:,} passages, {arguments.askers} questions in flight, "
        f"{arguments.seconds:g} s per phase\n"
    )
    print("| retrieval | generate p50 ms | generate p99 ms | questions/s |")
    print("|---|---|---|---|")
    for name, retriever in phases:
        latencies, answered = await phase(retriever, arguments.seconds, arguments.askers, words)
        print(
            f"| {name} | {statistics.median(latencies):.1f} | {_p(latencies, 0.99):.1f} | "
            f"{answered / arguments.seconds:.0f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
