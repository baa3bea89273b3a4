"""The analyze stage's DSPy signatures: a text's sentiment, topics and entities.

``AnalyzeTexts`` reads a whole batch of texts in one LM call (the analyzer's stage
batches its events); ``AnalyzeText`` reads one.
"""

from __future__ import annotations

import time
from typing import Any

import dspy
from pydantic import BaseModel, Field

from ragbus.dspy_program import module_fingerprint
from ragbus.errors import TransientError
from ragbus.lm import is_offline, lm_scope
from ragbus.payloads.analyzer import (
    MAX_ENTITIES,
    MAX_TOPICS,
    Entity,
    SentimentLabel,
    TextAnalyzed,
    TextReceived,
)


class AnalyzeText(dspy.Signature):  # type: ignore[misc]
    """Read the text and report its overall sentiment with a score from -1 (most negative)
    to 1 (most positive), its main topics as short lowercase names, and the named
    entities it mentions with their type."""

    text: str = dspy.InputField()
    sentiment: SentimentLabel = dspy.OutputField(desc="positive, negative, neutral or mixed")
    score: float = dspy.OutputField(desc="-1 .. 1")
    topics: list[str] = dspy.OutputField(desc="at most 8, most salient first")
    entities: list[Entity] = dspy.OutputField()


class Reading(BaseModel):
    """What the LM reports of one text, as it may come back: the shape of
    :class:`~ragbus.payloads.analyzer.TextAnalysis` without its limits, so that one text's
    eleventh topic does not fail the parsing of a whole batch; the handler clamps each
    reading to the payload's limits."""

    sentiment: SentimentLabel = Field(description="positive, negative, neutral or mixed")
    score: float = Field(description="-1 (most negative) .. 1 (most positive)")
    # the limits are told to the LM (the JSON schema it sees), not enforced here
    topics: list[str] = Field(
        default_factory=list,
        description="most salient first",
        json_schema_extra={"maxItems": MAX_TOPICS},
    )
    entities: list[Entity] = Field(
        default_factory=list, json_schema_extra={"maxItems": MAX_ENTITIES}
    )


class AnalyzeTexts(dspy.Signature):  # type: ignore[misc]
    """Read each text and report, for each one in the same order, its overall sentiment
    with a score from -1 (most negative) to 1 (most positive), its main topics as short
    lowercase names, and the named entities it mentions with their type."""

    texts: list[str] = dspy.InputField(desc="the texts, numbered by their position")
    analyses: list[Reading] = dspy.OutputField(desc="exactly one per text, in order")


class AnalyzeHandler:
    """Analyzes a batch of texts with one LM call (``AnalyzeTexts``).

    It is the analyzer's batch handler: it takes the ``text_received`` payloads of up to
    a batch of events and returns, for each one, its ``text_analyzed`` payload, or the
    error of that text alone. An LM that returns fewer analyses than texts fails the
    texts it left out (transiently: they are retried, in another batch); analyses beyond
    the limits (more than 8 topics, 50 entities) are cut to them.

    Parameters:
        lm: the LM to call (see :func:`ragbus.lm.build_lm`).
        module: the DSPy module (default: ``dspy.Predict(AnalyzeTexts)``); it takes
            ``texts`` and returns ``analyses``, one per text, in order.
    """

    def __init__(self, lm: dspy.BaseLM, *, module: dspy.Module | None = None) -> None:
        self.lm = lm
        self.module = module if module is not None else dspy.Predict(AnalyzeTexts)
        self.offline = is_offline(lm)
        self.fingerprint = module_fingerprint(self.module, lm)

    async def __call__(self, texts: list[TextReceived]) -> list[TextAnalyzed | Exception]:
        """The analyses of ``texts``, in order (an exception for a text that failed)."""
        started = time.perf_counter()
        with lm_scope(self.lm):
            prediction = await self.module.acall(texts=[received.text for received in texts])
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        analyses = list(prediction.analyses or [])
        results: list[TextAnalyzed | Exception] = []
        for position, received in enumerate(texts):
            if position >= len(analyses):
                results.append(
                    TransientError(
                        f"the LM returned {len(analyses)} analyses for {len(texts)} texts"
                    )
                )
                continue
            results.append(self._analyzed(received, analyses[position], elapsed_ms))
        return results

    def _analyzed(self, received: TextReceived, analysis: Any, elapsed_ms: float) -> TextAnalyzed:
        fields = analysis.model_dump() if isinstance(analysis, BaseModel) else dict(analysis)
        return TextAnalyzed(
            text=received.text,
            source=received.source,
            sentiment=fields["sentiment"],
            score=max(-1.0, min(1.0, float(fields["score"]))),
            topics=list(fields.get("topics") or [])[:MAX_TOPICS],
            entities=list(fields.get("entities") or [])[:MAX_ENTITIES],
            model=self.lm.model,
            offline=self.offline,
            timings_ms={"analyze": elapsed_ms},
        )
