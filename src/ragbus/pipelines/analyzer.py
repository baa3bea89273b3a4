"""The real-time text analyzer, as a value: ``text_received -> [analyze] -> text_analyzed``.

Each text's sentiment (positive, negative, neutral or mixed, with a score), topics and
entities, read by an LM through a DSPy signature with typed outputs. The analyze stage
batches its events: up to 16 texts share one LM call. The analyses are kept in the
``analyses`` sink for consumers that come later. ``ragbus analyze`` streams texts
through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ragbus.payloads.analyzer import TextAnalyzed, TextReceived
from ragbus.pipeline import Pipeline, StageContext

if TYPE_CHECKING:
    from ragbus.handlers.analyze import AnalyzeHandler

TEXT_RECEIVED: Final = "text_received"
TEXT_ANALYZED: Final = "text_analyzed"
ANALYZE: Final = "analyze"

#: Texts one LM call analyzes at most.
BATCH_SIZE: Final = 16

pipeline = Pipeline(
    "analyzer",
    description="Real-time text analysis: the sentiment, topics and entities of each text "
    "of a stream, read by an LM in batches.",
)
pipeline.event(
    TEXT_RECEIVED,
    TextReceived,
    examples=[
        {"text": "The new release from Acme Corp is fast and reliable.", "source": "review"},
        {"text": "Support in Berlin never answered my ticket. Disappointing."},
    ],
)
pipeline.event(TEXT_ANALYZED, TextAnalyzed)
pipeline.sink("analyses", TEXT_ANALYZED)


@pipeline.stage(
    ANALYZE,
    consumes=TEXT_RECEIVED,
    produces=TEXT_ANALYZED,
    dependency="lm",
    cacheable=True,
    batch_size=BATCH_SIZE,
)
def analyze(context: StageContext) -> AnalyzeHandler:
    """Reads the sentiment, topics and entities of a batch of texts in one LM call."""
    from ragbus.handlers.analyze import AnalyzeHandler  # DSPy: only where the stage runs

    return AnalyzeHandler(context.lm())
