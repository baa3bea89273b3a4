"""The offline LM given a text and no question: an extractive summary, said to be one."""

from __future__ import annotations

import dspy

from ragbus.lm import lm_scope, offline_lm
from ragbus.lm.extract import summarize

REVIEW = (
    "The battery of the Acme X2 lasts two days. The screen is bright. "
    "The battery charges fast, and the battery never overheats."
)


def test_the_sentence_that_stands_for_the_text_is_chosen() -> None:
    summary = summarize(REVIEW)
    assert summary.summary and summary.found
    assert [s.text for s in summary.sentences] == ["The battery of the Acme X2 lasts two days."]
    assert summary.matched_words[0] == "battery"  # the most frequent term, as written
    assert [s.text for s in summarize(REVIEW, most=2).sentences] == [
        "The battery of the Acme X2 lasts two days.",
        "The battery charges fast, and the battery never overheats.",
    ]
    assert not summarize("").found


async def test_a_text_without_a_question_is_summarized_and_says_so() -> None:
    with lm_scope(offline_lm()):
        prediction = await dspy.ChainOfThought("text -> summary").acall(text=REVIEW)
    assert prediction.summary == "The battery of the Acme X2 lasts two days."
    assert prediction.reasoning.startswith("This summary is extractive")
    with lm_scope(offline_lm()):
        asked = await dspy.Predict("text -> answer").acall(text="What lasts two days?")
    assert "context does not contain" in asked.answer  # a question is still a question
