"""The retrieve and generate handlers, called directly (no bus, no runtime)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import dspy
import pytest

from ragbus.errors import PermanentError
from ragbus.events import Envelope, derived_event_id, new_event
from ragbus.handlers import GenerateHandler, RetrieveHandler
from ragbus.handlers.generate import NO_PASSAGES_ANSWER, PROMPT_VERSION
from ragbus.lm import offline_lm
from ragbus.payloads.rag import (
    AnswerGenerated,
    DocumentsRetrieved,
    Passage,
    QueryReceived,
    RagEvent,
    Turn,
)
from ragbus.retrieval import SearchIndex, load_corpus
from ragbus.retrieval.bm25 import Bm25Retriever
from tests.samples import write_corpus


@pytest.fixture
def index(tmp_path: Path) -> Bm25Retriever:
    return Bm25Retriever(SearchIndex.build(load_corpus(write_corpus(tmp_path / "docs"))))


def query_event(question: str, **fields: Any) -> Envelope:
    return new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=question, **fields))


def retrieved_event(passages: list[Passage], question: str = "Why?") -> Envelope:
    payload = DocumentsRetrieved(question=question, passages=passages, timings_ms={"retrieve": 1.5})
    return query_event(question).derive(RagEvent.DOCUMENTS_RETRIEVED, payload)


class RecordingModule(dspy.Module):  # type: ignore[misc]
    """Answers with a fixed prediction and records the keyword arguments it got."""

    def __init__(self, error: Exception | None = None) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []
        self.error = error

    async def aforward(self, **kwargs: Any) -> dspy.Prediction:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        return dspy.Prediction(answer="  recorded answer  ", reasoning="because")


# --- retrieve ----------------------------------------------------------------------


async def test_retrieve_emits_documents_retrieved_derived_from_the_query(
    index: Bm25Retriever,
) -> None:
    history = [Turn(question="What is ragbus?", answer="A bus for DSPy stages.")]
    event = query_event("How do I replay dead letters?", k=2, history=history)

    outputs = await RetrieveHandler(index)(event)

    assert len(outputs) == 1
    out = outputs[0]
    assert out.type == RagEvent.DOCUMENTS_RETRIEVED
    assert out.id == derived_event_id(event.id, RagEvent.DOCUMENTS_RETRIEVED)
    assert out.correlation_id == event.id
    assert out.causation_id == event.id
    payload = out.payload_as(DocumentsRetrieved)
    assert isinstance(payload, DocumentsRetrieved)
    assert payload.question == "How do I replay dead letters?"
    assert payload.passages[0].doc_id == "guide/retries.md#1"
    assert payload.passages[0].title == "Dead letters"
    assert 1 <= len(payload.passages) <= 2
    assert payload.history == history
    assert payload.timings_ms["retrieve"] >= 0


async def test_retrieve_is_deterministic_for_a_redelivered_query(index: Bm25Retriever) -> None:
    event = query_event("tomato sunlight")
    handler = RetrieveHandler(index)

    first, second = await handler(event), await handler(event)

    assert first[0].id == second[0].id
    assert first[0].payload["passages"] == second[0].payload["passages"]


async def test_retrieve_may_find_nothing(index: Bm25Retriever) -> None:
    outputs = await RetrieveHandler(index)(query_event("zebra giraffe"))

    assert outputs[0].payload["passages"] == []


async def test_retrieve_refuses_other_event_types(index: Bm25Retriever) -> None:
    with pytest.raises(PermanentError, match="query_received"):
        await RetrieveHandler(index)(retrieved_event([]))


def test_retrieve_fingerprint_names_the_corpus_and_k(index: Bm25Retriever) -> None:
    handler = RetrieveHandler(index, default_k=3)

    assert index.index.fingerprint in handler.fingerprint
    assert handler.fingerprint.startswith("bm25:")
    assert handler.dependency is None  # BM25 calls nothing outside the process
    assert handler.fingerprint != RetrieveHandler(index, default_k=4).fingerprint
    with pytest.raises(ValueError, match="default_k"):
        RetrieveHandler(index, default_k=0)


# --- generate ----------------------------------------------------------------------


async def test_generate_answers_from_the_retrieved_passages(index: Bm25Retriever) -> None:
    query = query_event("When does the circuit breaker open?")
    retrieved = (await RetrieveHandler(index)(query))[0]

    outputs = await GenerateHandler(offline_lm())(retrieved)

    assert len(outputs) == 1
    out = outputs[0]
    assert out.type == RagEvent.ANSWER_GENERATED
    assert out.id == derived_event_id(retrieved.id, RagEvent.ANSWER_GENERATED)
    assert out.correlation_id == query.id
    assert out.causation_id == retrieved.id
    answer = out.payload_as(AnswerGenerated)
    assert isinstance(answer, AnswerGenerated)
    assert answer.question == "When does the circuit breaker open?"
    assert answer.answer.startswith(
        "A circuit breaker opens when the failure rate of a dependency passes its threshold."
    )
    assert "extractive" in answer.reasoning
    assert answer.model == "offline/extractive"
    assert answer.extractive is True
    retrieved_passages = retrieved.payload_as(DocumentsRetrieved).passages
    assert [s.doc_id for s in answer.sources] == [p.doc_id for p in retrieved_passages]
    assert answer.sources[0].doc_id == "guide/retries.md#2"
    assert answer.sources[0].title == "Breakers"
    assert answer.sources[0].score == retrieved_passages[0].score
    assert set(answer.timings_ms) == {"retrieve", "generate"}


async def test_generate_without_passages_answers_honestly_without_calling_the_lm() -> None:
    module = RecordingModule(error=AssertionError("the LM must not be called"))

    outputs = await GenerateHandler(offline_lm(), module=module)(retrieved_event([]))

    answer = outputs[0].payload_as(AnswerGenerated)
    assert answer.answer == NO_PASSAGES_ANSWER
    assert answer.sources == []
    assert module.calls == []


async def test_generate_passes_context_question_and_history_to_the_module() -> None:
    module = RecordingModule()
    passages = [Passage(doc_id="a#0", title="A", text="Alpha text.", score=2.0)]
    history = [Turn(question="Earlier?", answer="Yes.")]
    payload = DocumentsRetrieved(question="Now?", passages=passages, history=history)
    event = query_event("Now?").derive(RagEvent.DOCUMENTS_RETRIEVED, payload)

    outputs = await GenerateHandler(offline_lm(), module=module)(event)

    (call,) = module.calls
    assert call["context"] == ["Alpha text."]
    assert call["question"] == "Now?"
    assert call["history"].messages == [{"question": "Earlier?", "answer": "Yes."}]
    answer = outputs[0].payload_as(AnswerGenerated)
    assert answer.answer == "recorded answer"
    assert answer.reasoning == "because"


async def test_generate_lets_lm_errors_propagate() -> None:
    error = dspy.LMError("the LM is down")
    module = RecordingModule(error=error)
    passage = Passage(doc_id="a#0", text="Alpha text.", score=1.0)

    with pytest.raises(dspy.LMError) as caught:
        await GenerateHandler(offline_lm(), module=module)(retrieved_event([passage]))

    assert caught.value is error


async def test_generate_refuses_other_event_types() -> None:
    with pytest.raises(PermanentError, match="documents_retrieved"):
        await GenerateHandler(offline_lm())(query_event("Why?"))


async def test_generate_calls_overlap_their_lm_latency(index: Bm25Retriever) -> None:
    handler = GenerateHandler(offline_lm(latency_ms=500))
    events = [
        (await RetrieveHandler(index)(query_event(f"When does the circuit breaker open {i}?")))[0]
        for i in range(5)
    ]

    started = time.perf_counter()
    results = await asyncio.gather(*(handler(event) for event in events))
    elapsed = time.perf_counter() - started

    assert all(r[0].payload["answer"].startswith("A circuit breaker opens") for r in results)
    assert elapsed < 2.0  # five overlapping waits, not 2.5 s in a row


def test_generate_fingerprint_names_model_prompt_version_and_module() -> None:
    lm = offline_lm()
    default = GenerateHandler(lm).fingerprint

    assert default.startswith(f"offline/extractive:p{PROMPT_VERSION}:")
    assert GenerateHandler(offline_lm()).fingerprint == default
    other_module = dspy.ChainOfThought("context: list[str], question, history -> answer")
    assert GenerateHandler(lm, module=other_module).fingerprint != default
    other_model = dspy.LM("openai/gpt-4o-mini", num_retries=0, cache=False)
    assert not GenerateHandler(other_model).fingerprint.startswith("offline/extractive")
    hotter = dspy.LM("openai/gpt-4o-mini", num_retries=0, cache=False, temperature=0.9)
    assert GenerateHandler(hotter).fingerprint != GenerateHandler(other_model).fingerprint


async def test_an_lm_reading_beyond_the_payloads_limits_is_clamped_not_failed() -> None:
    from ragbus.handlers.analyze import AnalyzeHandler, Reading
    from ragbus.payloads.analyzer import TextReceived

    class Generous(dspy.Module):  # an LM that reports too much for one text, too few overall
        async def aforward(self, texts: list[str]) -> dspy.Prediction:
            reading = Reading(sentiment="positive", score=3.5, topics=[f"t{n}" for n in range(12)])
            return dspy.Prediction(analyses=[reading])

    handler = AnalyzeHandler(offline_lm(), module=Generous())
    first, second = await handler([TextReceived(text="good"), TextReceived(text="fine")])
    assert not isinstance(first, Exception)
    assert first.score == 1.0 and len(first.topics) == 8  # clamped to the payload's limits
    assert isinstance(second, Exception) and "1 analyses for 2 texts" in str(second)
