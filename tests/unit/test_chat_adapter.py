"""ragbus's chat adapter writes the same prompts as DSPy's, with less work per call."""

from __future__ import annotations

from typing import Any

import dspy
import pytest

from ragbus.handlers.generate import AnswerQuestion
from ragbus.lm.adapter import ChatAdapter


class Mixed(dspy.Signature):  # type: ignore[misc]
    """Read every kind of input."""

    text: str = dspy.InputField()
    passages: str = dspy.InputField(desc="a list given for a text field")
    count: int = dspy.InputField()
    options: dict[str, Any] = dspy.InputField()
    tags: list[str] = dspy.InputField()
    answer: str = dspy.OutputField()


@pytest.mark.parametrize(
    ("signature", "inputs"),
    [
        (
            AnswerQuestion.delete("history"),
            {"context": ["first passage", "second passage"], "question": "How?"},
        ),
        (AnswerQuestion.delete("history"), {"context": "one passage as text", "question": "Ü?"}),
        (
            Mixed,
            {
                "text": "plain text\nover two lines",
                "passages": ["a", "b"],
                "count": 3,
                "options": {"k": 4, "nested": [1.5, None]},
                "tags": ["x", "y"],
            },
        ),
        (Mixed, {"text": '{"looks": "like JSON"}', "count": 0}),
    ],
)
@pytest.mark.parametrize("main_request", [True, False])
def test_user_messages_are_dspys(
    signature: type[dspy.Signature], inputs: dict[str, Any], main_request: bool
) -> None:
    ours = ChatAdapter().format_user_message_content(
        signature, inputs, prefix="before", suffix="after", main_request=main_request
    )
    dspys = dspy.ChatAdapter().format_user_message_content(
        signature, inputs, prefix="before", suffix="after", main_request=main_request
    )
    assert ours == dspys


def test_whole_prompts_are_dspys() -> None:
    signature = AnswerQuestion.delete("history")
    inputs = {"context": ["a passage"], "question": "What is it?"}
    ours = ChatAdapter().format(signature, demos=[], inputs=inputs)
    assert ours == dspy.ChatAdapter().format(signature, demos=[], inputs=inputs)
