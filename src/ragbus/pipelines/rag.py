"""The default pipeline: retrieval-augmented question answering, as a value.

``query_received -> [retrieve] -> documents_retrieved -> [generate] -> answer_generated``,
with ``answer_token`` events streamed while an answer is written, and the answers kept
in the ``answers`` sink for consumers that come later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ragbus.payloads.rag import (
    AnswerGenerated,
    DocumentsRetrieved,
    QueryReceived,
    RagEvent,
)
from ragbus.pipeline import Pipeline, StageContext
from ragbus.streaming import StreamToken

if TYPE_CHECKING:
    from ragbus.handlers.generate import GenerateHandler
    from ragbus.handlers.retrieve import RetrieveHandler

RETRIEVE: Final = "retrieve"
GENERATE: Final = "generate"

pipeline = Pipeline(
    "rag",
    description="Retrieval-augmented question answering: a question is answered by an LM "
    "from the passages a search finds in the corpus.",
)
pipeline.event(
    RagEvent.QUERY_RECEIVED,
    QueryReceived,
    examples=[{"question": "How does ragbus handle a failed event?", "k": 4}],
)
_PASSAGE = (
    "A permanent failure goes straight to the dead-letter queue with its reason; a "
    "transient one is retried, then redelivered later."
)
pipeline.event(
    RagEvent.DOCUMENTS_RETRIEVED,
    DocumentsRetrieved,
    examples=[
        {
            "question": "How does ragbus handle a failed event?",
            "passages": [
                {"doc_id": "failures.md#1", "title": "Failures", "text": _PASSAGE, "score": 7.2}
            ],
            "timings_ms": {"retrieve": 1.8},
        }
    ],
)
pipeline.event(
    RagEvent.ANSWER_GENERATED,
    AnswerGenerated,
    examples=[
        {
            "question": "How does ragbus handle a failed event?",
            "answer": _PASSAGE,
            "sources": [{"doc_id": "failures.md#1", "title": "Failures", "score": 7.2}],
            "model": "openai/gpt-4o-mini",
            "timings_ms": {"retrieve": 1.8, "generate": 640.0},
        }
    ],
)
pipeline.event(
    RagEvent.ANSWER_TOKEN,
    StreamToken,
    transient=True,
    description="A piece of an answer while the generate stage writes it (transient).",
    examples=[{"sequence": 0, "text": "A permanent failure"}],
)
pipeline.sink("answers", RagEvent.ANSWER_GENERATED)


@pipeline.stage(
    RETRIEVE,
    consumes=RagEvent.QUERY_RECEIVED,
    produces=RagEvent.DOCUMENTS_RETRIEVED,
    dependency="retriever",
    cacheable=True,
)
def retrieve(context: StageContext) -> RetrieveHandler:
    """Finds the passages for a question in the corpus (``RAGBUS_CORPUS``) with the
    retriever ``RAGBUS_RETRIEVER`` names: BM25, dense or hybrid. Dense and hybrid
    searches call the embedding model, so the stage then depends on ``embedder``."""
    # imported here: the handlers bring DSPy and the retrievers, which commands that only
    # read the pipeline's event types (schema, dlq, publish) never need
    from ragbus.handlers.retrieve import RetrieveHandler
    from ragbus.retrieval.factory import build_retriever

    return RetrieveHandler(build_retriever(context.settings), default_k=context.settings.top_k)


@pipeline.stage(
    GENERATE,
    consumes=RagEvent.DOCUMENTS_RETRIEVED,
    produces=RagEvent.ANSWER_GENERATED,
    dependency="lm",
    cacheable=True,
    streams=RagEvent.ANSWER_TOKEN,
)
def generate(context: StageContext) -> GenerateHandler:
    """Answers the question from its passages with a DSPy module and the configured LM
    (``RAGBUS_LM_MODEL``; a compiled program with ``RAGBUS_PROGRAM``); while the LM's
    breaker is open, with ``RAGBUS_LM_FALLBACK_MODEL`` if set."""
    from ragbus.handlers.generate import GenerateHandler

    settings = context.settings
    fallback = None
    if settings.lm_fallback_model:
        from ragbus.lm import build_lm

        fallback = build_lm(settings.model_copy(update={"lm_model": settings.lm_fallback_model}))
    return GenerateHandler(
        context.lm(), program=settings.program, emit=context.emit, fallback_lm=fallback
    )


#: Stage names in pipeline order.
STAGE_NAMES: Final = pipeline.stage_names
