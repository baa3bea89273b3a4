"""Scoring an answer against the gold answer: exact match, token F1, or an LM judge.

Exact match and F1 compare normalized text (lowercase, no punctuation, no articles,
single spaces), as the SQuAD evaluation does. The judge asks the configured LM whether
the answer states what the gold answer states.
"""

from __future__ import annotations

import logging
import re
import string
from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Final

import dspy
from dspy.utils.exceptions import AdapterParseError

from ragbus.lm import lm_scope

logger = logging.getLogger(__name__)

#: A metric as DSPy's optimizers call it: (example, prediction, trace) -> score in [0, 1].
Metric = Callable[..., float]

#: An F1 or judge score at least this high counts as a good demo when bootstrapping.
GOOD_ENOUGH: Final = 0.5

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


class MetricKind(StrEnum):
    """The metrics ``ragbus optimize --metric`` offers."""

    EXACT = "exact"
    F1 = "f1"
    JUDGE = "judge"


def normalize(text: str) -> str:
    """``text`` lowercased, without punctuation and articles, single-spaced."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(gold: str, answer: str) -> float:
    """1.0 when the normalized texts are equal, else 0.0."""
    return float(normalize(gold) == normalize(answer))


def f1_score(gold: str, answer: str) -> float:
    """The F1 of the normalized words of ``answer`` against those of ``gold``."""
    gold_words, answer_words = normalize(gold).split(), normalize(answer).split()
    if not gold_words or not answer_words:
        return float(gold_words == answer_words)
    common = sum((Counter(gold_words) & Counter(answer_words)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(answer_words), common / len(gold_words)
    return 2 * precision * recall / (precision + recall)


class JudgeAnswer(dspy.Signature):  # type: ignore[misc]
    """Does the candidate answer state what the reference answer states? Extra detail is
    fine; a contradiction or a missing fact is not."""

    reference_answer: str = dspy.InputField()
    candidate_answer: str = dspy.InputField()
    agrees: bool = dspy.OutputField()


class LMJudge:
    """A metric that asks ``lm`` whether the answer agrees with the gold answer.

    Parameters:
        lm: the judging LM.
    """

    def __init__(self, lm: dspy.BaseLM) -> None:
        self.lm = lm
        self.judge = dspy.Predict(JudgeAnswer)

    def __call__(self, gold: str, answer: str) -> float:
        """1.0 when the LM says the answer agrees, else 0.0 (also when its verdict
        cannot be read, which is logged). Errors of the LM itself propagate."""
        try:
            with lm_scope(self.lm):
                verdict = self.judge(reference_answer=gold, candidate_answer=answer)
        except AdapterParseError as exc:
            logger.warning("the judge's verdict could not be read, counted as 0: %s", exc)
            return 0.0
        return float(bool(verdict.agrees))


def build_metric(kind: MetricKind, lm: dspy.BaseLM) -> Metric:
    """The DSPy metric of ``kind``: it scores ``prediction.answer`` against
    ``example.answer``.

    Parameters:
        kind: exact, f1 or judge.
        lm: the LM the judge asks (only for ``judge``).
    """
    score: Callable[[str, str], float]
    if kind == MetricKind.EXACT:
        score = exact_match
    elif kind == MetricKind.F1:
        score = f1_score
    else:
        score = LMJudge(lm)

    def metric(example: Any, prediction: Any, trace: Any = None) -> float:
        return score(str(example.answer), str(getattr(prediction, "answer", "") or ""))

    metric.__name__ = f"{kind.value}_metric"
    return metric
