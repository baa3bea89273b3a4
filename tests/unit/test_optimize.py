"""The parts of ``ragbus optimize`` that need no LM: metrics, trainsets, and examples made
from exported answers and dead letters."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import pytest

from ragbus.errors import ConfigurationError
from ragbus.lm import offline_lm
from ragbus.optimize.metrics import MetricKind, build_metric, exact_match, f1_score, normalize
from ragbus.optimize.trainset import QAExample, exported_lines, parse_trainset, read_trainset, split
from tests.docs.seeds import dead_letters


def test_exact_match_and_f1_compare_normalized_words() -> None:
    assert normalize("The  Cache, expires!") == "cache expires"
    assert exact_match("3600 seconds.", "3600 Seconds") == 1.0
    assert exact_match("3600 seconds", "one hour") == 0.0
    assert f1_score("3600 seconds by default", "3600 seconds") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert f1_score("spores", "ferns reproduce with spores") == pytest.approx(0.4)
    assert f1_score("spores", "seeds") == 0.0
    assert f1_score("", "") == 1.0


def test_metrics_score_the_prediction_against_the_example() -> None:
    example = dspy.Example(question="q", answer="With spores.")
    good, bad = dspy.Prediction(answer="with spores"), dspy.Prediction(answer="with seeds")

    exact = build_metric(MetricKind.EXACT, offline_lm())
    f1 = build_metric(MetricKind.F1, offline_lm())
    assert (exact(example, good), exact(example, bad)) == (1.0, 0.0)
    assert f1(example, bad) == pytest.approx(0.5)


def test_the_judge_asks_the_lm() -> None:
    judge = build_metric(MetricKind.JUDGE, offline_lm())
    example = dspy.Example(question="q", answer="Ferns reproduce with spores.")

    # the offline LM judges by the words the answer shares with the reference
    assert judge(example, dspy.Prediction(answer="Ferns reproduce with spores.")) == 1.0
    assert judge(example, dspy.Prediction(answer="Zebras have stripes.")) == 0.0


def test_a_trainset_is_read_line_by_line_and_bad_lines_are_named(tmp_path: Path) -> None:
    text = (
        '{"question": "How do ferns reproduce?", "answer": "With spores."}\n\n'
        '{"question": "Where do zebras live?", "answer": null}\n'
        '{"question": "What colour?", "answer": "Black and white", "context": ["Zebras."]}\n'
    )
    read = parse_trainset(text, name="qa.jsonl")

    assert read.examples == [
        QAExample("How do ferns reproduce?", "With spores."),
        QAExample("What colour?", "Black and white", ("Zebras.",)),
    ]
    assert read.unlabelled == [3]
    for line, reason in [
        ("[1, 2]", "expected an object"),
        ('{"answer": "x"}', "'question' must be a non-empty string"),
        ('{"question": "q", "answer": 3}', "'answer' must be a non-empty string"),
        ('{"question": "q", "answer": "a", "context": "one"}', "'context' must be a list"),
        ('{"question": "q", "question": "r"}', "not JSON"),
    ]:
        with pytest.raises(ConfigurationError, match=f"qa.jsonl, line 2: .*{reason}"):
            parse_trainset(f"{text.splitlines()[0]}\n{line}\n", name="qa.jsonl")
    with pytest.raises(ConfigurationError, match="does not exist"):
        read_trainset(tmp_path / "missing.jsonl")


def test_the_split_is_repeatable_and_keeps_both_parts() -> None:
    examples = [QAExample(f"q{i}", f"a{i}") for i in range(10)]

    train, held = split(examples, 0.3, seed=1)
    assert (len(train), len(held)) == (7, 3)
    assert split(examples, 0.3, seed=1) == (train, held)
    assert sorted(e.question for e in train + held) == sorted(e.question for e in examples)
    assert [len(part) for part in split(examples[:2], 0.9)] == [1, 1]
    with pytest.raises(ConfigurationError, match="at least 2 labelled examples"):
        split(examples[:1], 0.3)


def test_exported_answers_and_dead_letters_become_trainset_lines() -> None:
    answer = {
        "type": "answer_generated",
        "payload": {"question": "What is a minimal envelope?", "answer": "type and payload."},
    }
    question = {"type": "query_received", "payload": {"question": "Who answers?"}}

    lines = list(exported_lines([*dead_letters(), answer, question, answer, 7, {"type": "x"}]))

    assert lines == [
        {
            "question": "How does ragbus handle a failed event?",
            "answer": None,
            "context": ["When an event fails, ragbus classifies the failure once."],
        },
        {"question": "What is a minimal envelope?", "answer": "type and payload."},
        {"question": "Who answers?", "answer": None},
    ]  # the invalid dead letter has no question; repeats are left out
    assert json.loads(json.dumps(lines[0]))["answer"] is None
