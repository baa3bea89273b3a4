"""Payloads of retrieval-augmented question answering:
``query_received -> documents_retrieved -> answer_generated`` (and ``answer_token``
while an answer is written)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from ragbus.streaming import StreamToken

MAX_QUESTION_CHARS: Final = 4000
MAX_PASSAGES: Final = 50
MAX_PASSAGE_CHARS: Final = 20_000
MAX_ANSWER_CHARS: Final = 20_000
MAX_HISTORY_TURNS: Final = 20


class RagEvent(StrEnum):
    """The event types of the RAG pipeline (each is also its routing key)."""

    QUERY_RECEIVED = "query_received"
    DOCUMENTS_RETRIEVED = "documents_retrieved"
    ANSWER_GENERATED = "answer_generated"
    ANSWER_TOKEN = "answer_token"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Turn(_Strict):
    """One earlier exchange of a conversation, passed to the LM as history."""

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    answer: str = Field(max_length=MAX_ANSWER_CHARS)


class QueryReceived(_Strict):
    """A question to answer.

    Parameters:
        question: the question, 1..4000 characters.
        k: how many passages to retrieve, 1..50 (default: the retrieve stage's setting,
            ``RAGBUS_TOP_K``).
        history: earlier turns of the same conversation, at most 20 (default none).
    """

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    k: int | None = Field(default=None, ge=1, le=MAX_PASSAGES)
    history: list[Turn] = Field(default_factory=list, max_length=MAX_HISTORY_TURNS)


class Passage(_Strict):
    """A retrieved piece of a document, with its retrieval score."""

    doc_id: str = Field(min_length=1, max_length=500)
    title: str = Field(default="", max_length=500)
    text: str = Field(min_length=1, max_length=MAX_PASSAGE_CHARS)
    score: float


class DocumentsRetrieved(_Strict):
    """The passages found for a question (the retrieve stage's output)."""

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    passages: list[Passage] = Field(max_length=MAX_PASSAGES)
    history: list[Turn] = Field(default_factory=list, max_length=MAX_HISTORY_TURNS)
    timings_ms: dict[str, float] = Field(default_factory=dict)


class Source(_Strict):
    """A document an answer was drawn from."""

    doc_id: str
    title: str = ""
    score: float


class AnswerGenerated(_Strict):
    """The answer to a question (the generate stage's output).

    ``extractive`` is true when the answer was assembled from passage sentences by the
    offline LM rather than written by a generative model. ``fallback`` is true when the
    fallback LM (``RAGBUS_LM_FALLBACK_MODEL``) wrote it because the primary's breaker
    was open (``model`` names it); absent in events of earlier ragbus, read as false.
    """

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    answer: str = Field(max_length=MAX_ANSWER_CHARS)
    reasoning: str = Field(default="", max_length=MAX_ANSWER_CHARS)
    sources: list[Source] = Field(default_factory=list, max_length=MAX_PASSAGES)
    model: str
    extractive: bool = False
    fallback: bool = False
    timings_ms: dict[str, float] = Field(default_factory=dict)


#: A piece of an answer while the generate stage writes it (transient ``answer_token``).
AnswerToken = StreamToken
