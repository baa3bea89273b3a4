"""Your own pipeline: customer reviews, cleaned, then read by a DSPy module.

``review_received -> [clean] -> review_cleaned -> [read] -> review_read``

Run it with ragbus's commands (``--app docs_example:pipeline``, from this folder or with
it on ``PYTHONPATH``); test it with ``ragbus.testing``. See docs/pipelines.md.
"""

from __future__ import annotations

from typing import Literal

import dspy
from pydantic import BaseModel, Field

from ragbus import Pipeline, dspy_stage
from ragbus.streaming import StreamToken

Sentiment = Literal["positive", "negative", "neutral", "mixed"]


class ReviewReceived(BaseModel):
    """A customer review, as a shop sends it."""

    text: str = Field(min_length=1, max_length=5000)
    product: str = Field(default="", max_length=200)


class ReviewCleaned(BaseModel):
    """The review with its whitespace and product name normalised."""

    text: str
    product: str


class ReviewRead(BaseModel):
    """What the review says: a one-sentence summary, its sentiment, its topics."""

    product: str
    text: str
    summary: str
    sentiment: Sentiment
    topics: list[str] = Field(default_factory=list, max_length=8)


class ReadReview(dspy.Signature):  # type: ignore[misc]
    """Read the customer review: summarize it in one sentence, judge its overall
    sentiment and name its main topics."""

    text: str = dspy.InputField()
    summary: str = dspy.OutputField(desc="one sentence")
    sentiment: Sentiment = dspy.OutputField()
    topics: list[str] = dspy.OutputField(desc="at most 8 short topic names")


pipeline = Pipeline("reviews", description="Customer reviews, cleaned and read by an LM.")
pipeline.event(
    "review_received",
    ReviewReceived,
    examples=[{"text": "The battery lasts two days.  Great phone!", "product": " X2 "}],
)
pipeline.event("review_cleaned", ReviewCleaned)
pipeline.event("review_read", ReviewRead)
pipeline.event("summary_token", StreamToken, transient=True)
pipeline.sink("reviews", "review_read")


@pipeline.stage(consumes="review_received", produces="review_cleaned")
async def clean(review: ReviewReceived) -> ReviewCleaned:
    """Collapse whitespace; lower-case the product name."""
    return ReviewCleaned(text=" ".join(review.text.split()), product=review.product.strip().lower())


dspy_stage(
    pipeline,
    dspy.ChainOfThought(ReadReview),
    name="read",
    consumes="review_cleaned",
    produces="review_read",
    stream="summary",
    tokens="summary_token",
)
