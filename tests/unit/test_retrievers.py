"""The retrievers behind one interface, without any network: BM25, dense over a model
that embeds in process, hybrid fusion, query batching, and how the retrieve stage is
built from the settings."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from ragbus.config import RetrieverKind, Settings
from ragbus.errors import ConfigurationError, TransientError
from ragbus.payloads.rag import Passage
from ragbus.pipeline import StageContext
from ragbus.pipelines.rag import RETRIEVE, pipeline
from ragbus.retrieval import CorpusIndex, Retriever, SearchIndex, load_corpus
from ragbus.retrieval.bm25 import Bm25Retriever
from ragbus.retrieval.dense import DenseRetriever
from ragbus.retrieval.embedder import Embedder, QueryEmbeddings
from ragbus.retrieval.factory import build_retriever
from ragbus.retrieval.hybrid import RRF_K, HybridRetriever, fuse
from ragbus.retrieval.saved import Embeddings
from ragbus.retrieval.vectors import normalized, top_k
from ragbus.stage_build import build_stage
from tests.embedders import WordEmbedder
from tests.samples import write_corpus

VOCABULARY = ["tomatoes", "sunlight", "water", "cache", "fingerprint", "breaker", "redis"]


def passages(*texts: str) -> list[Passage]:
    return [Passage(doc_id=f"d{i}", text=text, score=0.0) for i, text in enumerate(texts)]


@pytest.fixture
def corpus_index(tmp_path: Path) -> CorpusIndex:
    bm25 = SearchIndex.build(load_corpus(write_corpus(tmp_path / "docs")))
    embedder = WordEmbedder(vocabulary=VOCABULARY)
    texts = [f"{p.title}\n{p.text}" for p in bm25.passages]
    vectors = asyncio.run(embedder.embed(texts))
    return CorpusIndex(bm25, embeddings=Embeddings(embedder.model, vectors))


def dense_of(index: CorpusIndex, embedder: Embedder | None = None) -> DenseRetriever:
    assert index.embeddings is not None
    queries = QueryEmbeddings(embedder or WordEmbedder(vocabulary=VOCABULARY))
    return DenseRetriever(index.passages, index.embeddings, queries, index.version)


# --- vectors and fusion ------------------------------------------------------------


def test_vectors_are_unit_rows_and_the_nearest_come_first() -> None:
    vectors = normalized([[3, 0, 0], [1, 1, 0], [0, 0, 2], [0, 0, 0]])

    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0)
    assert not vectors[3].any()  # a zero vector stays zero, never NaN
    (found,) = top_k(vectors, normalized([[1, 0.1, 0]]), 2)
    assert [row for row, _ in found] == [0, 1]
    assert found[0][1] > found[1][1]
    (everything,) = top_k(vectors, normalized([[0, 0, 1]]), 10)
    assert len(everything) == 4 and everything[0][0] == 2


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    by_terms = passages("a", "b", "c")
    by_meaning = [by_terms[2], by_terms[1], Passage(doc_id="x", text="x", score=0.0)]

    fused = fuse([by_terms, by_meaning], 3)

    # b is second in both; a and c each first in one: a ties c and comes first (seen first)
    assert [p.doc_id for p in fused] == ["d2", "d1", "d0"]
    assert fused[0].score == round(1 / (RRF_K + 1) + 1 / (RRF_K + 3), 6)
    assert [p.doc_id for p in fuse([by_terms, []], 2)] == ["d0", "d1"]


# --- the three retrievers ----------------------------------------------------------


async def test_every_kind_is_a_retriever_with_its_own_fingerprint(
    corpus_index: CorpusIndex,
) -> None:
    bm25 = Bm25Retriever(corpus_index.bm25)
    dense = dense_of(corpus_index)
    hybrid = HybridRetriever(bm25, dense)

    for retriever in (bm25, dense, hybrid):
        assert isinstance(retriever, Retriever)
        assert corpus_index.version in retriever.fingerprint
        assert retriever.size == len(corpus_index)
    assert len({bm25.fingerprint, dense.fingerprint, hybrid.fingerprint}) == 3
    assert "local/words" in dense.fingerprint and "local/words" in hybrid.fingerprint
    assert (bm25.dependency, dense.dependency, hybrid.dependency) == (None, "embedder", "embedder")


async def test_dense_finds_by_meaning_and_hybrid_by_both(corpus_index: CorpusIndex) -> None:
    dense = dense_of(corpus_index)
    hybrid = HybridRetriever(Bm25Retriever(corpus_index.bm25), dense)

    found = await dense.search("sunlight for tomatoes", 2)
    assert found[0].doc_id == "garden.txt#0"
    assert 0 < found[0].score <= 1
    assert (await dense.search("zebra", 3)) == []  # nothing similar: nothing returned
    fused = await hybrid.search("breaker opened", 3)
    assert fused[0].doc_id == "guide/retries.md#2"
    assert len(fused) <= 3


async def test_a_search_runs_in_a_search_thread_not_in_the_event_loop(
    corpus_index: CorpusIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    search = corpus_index.bm25.search

    def recording(query: str, k: int = 4) -> list[Passage]:
        threads.append(threading.current_thread().name)
        return search(query, k)

    monkeypatch.setattr(corpus_index.bm25, "search", recording)
    await Bm25Retriever(corpus_index.bm25).search("cache", 2)
    await Bm25Retriever(corpus_index.bm25, off_loop=False).search("cache", 2)

    assert threads[0].startswith("ragbus-search")
    assert threads[1] == threading.current_thread().name


async def test_concurrent_questions_share_embedding_calls(corpus_index: CorpusIndex) -> None:
    embedder = WordEmbedder(vocabulary=VOCABULARY)
    dense = dense_of(corpus_index, embedder)
    questions = [f"tomatoes sunlight {i}" for i in range(20)]

    results = await asyncio.gather(*(dense.search(q, 1) for q in questions))

    assert all(found[0].doc_id == "garden.txt#0" for found in results)
    batches = embedder.batches
    assert [len(batch) for batch in batches] == [8, 8, 4]  # batch_size 8: 3 calls, not 20
    assert sorted(text for batch in batches for text in batch) == sorted(questions)

    batches.clear()
    await dense.search("tomatoes", 1)  # a lone question goes at once, alone
    assert batches == [["tomatoes"]]


async def test_a_failed_embedding_call_fails_the_questions_it_carried(
    corpus_index: CorpusIndex,
) -> None:
    embedder = WordEmbedder(vocabulary=VOCABULARY)
    dense = dense_of(corpus_index, embedder)
    embedder.failures.append(TransientError("embedding server down"))

    results = await asyncio.gather(
        *(dense.search(f"cache {i}", 1) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, TransientError) for result in results)

    embedder.failures.clear()
    assert (await dense.search("redis cache", 1))[0].doc_id in {"faq-cache", "faq.jsonl#2"}


def test_a_question_model_other_than_the_index_model_is_refused(
    corpus_index: CorpusIndex,
) -> None:
    with pytest.raises(ConfigurationError, match=r"embedded with local/words.*other/model"):
        dense_of(corpus_index, WordEmbedder(model="other/model", vocabulary=VOCABULARY))


# --- built from the settings -------------------------------------------------------


def test_dense_and_hybrid_need_a_model_and_an_index_with_embeddings(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")

    with pytest.raises(ConfigurationError, match="RAGBUS_EMBED_MODEL"):
        build_retriever(Settings(retriever=RetrieverKind.DENSE, corpus=corpus))
    with pytest.raises(ConfigurationError, match="has none: run `ragbus index PATH`"):
        build_retriever(
            Settings(retriever=RetrieverKind.HYBRID, corpus=corpus, embed_model="openai/x")
        )
    assert isinstance(build_retriever(Settings(corpus=corpus)), Bm25Retriever)


def test_the_retrieve_stage_depends_on_what_its_retriever_calls(
    corpus_index: CorpusIndex, tmp_path: Path
) -> None:
    target = tmp_path / "index"
    corpus_index.save(target)
    spec = pipeline.stages[RETRIEVE]

    def stage_for(**settings: object) -> tuple[str | None, str]:
        context = StageContext(pipeline=pipeline, stage=spec, settings=Settings(**settings))  # type: ignore[arg-type]
        stage = build_stage(spec, context)
        return stage.dependency, stage.fingerprint

    bm25 = stage_for(corpus=target)
    hybrid = stage_for(corpus=target, retriever="hybrid", embed_model="local/words")
    dense = stage_for(corpus=target, retriever="dense", embed_model="local/words")

    assert bm25[0] == "retriever"  # as declared: BM25 calls nothing outside
    assert hybrid[0] == dense[0] == "embedder"
    assert len({bm25[1], hybrid[1], dense[1]}) == 3
    assert all(corpus_index.version in fingerprint for _, fingerprint in (bm25, hybrid, dense))
    assert "local/words" in dense[1]
