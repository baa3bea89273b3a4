"""The analyze stage's DSPy signatures: a text's sentiment, topics and entities.

``AnalyzeTexts`` reads a whole batch of texts in one LM call (the analyzer's stage
batches its events); ``AnalyzeText`` reads one.
"""

from __future__ import annotations

import dspy

from ragbus.payloads.analyzer import Entity, SentimentLabel, TextAnalysis


class AnalyzeText(dspy.Signature):  # type: ignore[misc]
    """Read the text and report its overall sentiment with a score from -1 (most negative)
    to 1 (most positive), its main topics as short lowercase names, and the named
    entities it mentions with their type."""

    text: str = dspy.InputField()
    sentiment: SentimentLabel = dspy.OutputField(desc="positive, negative, neutral or mixed")
    score: float = dspy.OutputField(desc="-1 .. 1")
    topics: list[str] = dspy.OutputField(desc="at most 8, most salient first")
    entities: list[Entity] = dspy.OutputField()


class AnalyzeTexts(dspy.Signature):  # type: ignore[misc]
    """Read each text and report, for each one in the same order, its overall sentiment
    with a score from -1 (most negative) to 1 (most positive), its main topics as short
    lowercase names, and the named entities it mentions with their type."""

    texts: list[str] = dspy.InputField(desc="the texts, numbered by their position")
    analyses: list[TextAnalysis] = dspy.OutputField(desc="exactly one per text, in order")
