"""Batch answering: ``ragbus ask --file`` as a user runs it, and ``Client.ask_many`` on
every bus. Results come in input order, one per question; a failing question is reported
with its error and the others are answered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragbus.batch import BatchQuestion, BatchResult, parse_line, read_questions
from ragbus.client import Client
from ragbus.config import Settings
from tests.conftest import BusFactory

QUESTIONS = 1000
BAD = 500  # the line whose question is too long (over 4000 characters)


def _question(number: int) -> str:
    return f"How does ragbus handle a failed event? (question {number})"


@pytest.mark.slow
def test_a_file_of_a_thousand_questions_is_answered_in_order(tmp_path: Path) -> None:
    lines = [_question(n) if n != BAD else "x" * 4001 for n in range(QUESTIONS)]
    questions = tmp_path / "questions.txt"
    questions.write_text("\n".join(lines) + "\n", encoding="utf-8")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("RAGBUS_")}
    environment["XDG_DATA_HOME"] = str(tmp_path / "data")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "ragbus.cli",
            "ask",
            "--file",
            str(questions),
            "--concurrency",
            "16",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr  # one question failed
    rows = [json.loads(line) for line in completed.stdout.splitlines()]
    assert [row["index"] for row in rows] == list(range(QUESTIONS))
    assert [row["line"] for row in rows] == list(range(1, QUESTIONS + 1))
    failed = [row for row in rows if "error" in row]
    assert [row["index"] for row in failed] == [BAD]
    assert failed[0]["error"]["type"] == "invalid"
    assert "at most 4000 characters" in failed[0]["error"]["message"]
    answered = [row for row in rows if "answer" in row]
    assert len(answered) == QUESTIONS - 1
    assert all(row["question"] == _question(row["index"]) for row in answered)
    assert all(row["answer"].strip() and row["sources"] for row in answered)
    assert len({row["correlation_id"] for row in answered}) == QUESTIONS - 1
    assert f"{QUESTIONS - 1} answered, 1 failed" in completed.stderr


async def test_ask_many_answers_in_order_and_reports_each_failure(
    make_bus: BusFactory, settings: Settings
) -> None:
    questions: list[str | BatchQuestion] = [_question(n) for n in range(40)]
    questions[7] = ""  # empty: breaks the payload's limits
    questions[20] = BatchQuestion(question="Which LM answers by default?", k=2, id="lm")
    seen: list[int] = []

    def progress(result: BatchResult) -> None:
        seen.append(result.index)

    async with Client(settings, bus=make_bus(), run_pipeline=True) as client:
        results = await client.ask_many(questions, concurrency=4, timeout=30, on_result=progress)
    assert [result.index for result in results] == list(range(40)) == seen
    assert [result.index for result in results if not result.ok] == [7]
    assert results[7].error_type == "invalid"
    for index in (0, 39):
        answer = results[index].answer
        assert answer is not None and answer.answer.payload["question"] == _question(index)
    named = results[20]
    assert named.answer is not None and len(named.answer.answer.payload["sources"]) <= 2
    assert named.to_json()["id"] == "lm"


def test_jsonl_lines_are_objects_or_strings_and_bad_ones_say_why() -> None:
    def parse(text: str) -> tuple[BatchQuestion | None, str]:
        entry = parse_line(text, 1, jsonl=True)
        assert entry is not None
        return entry.question, entry.error

    assert parse('{"question": "q", "k": 3, "id": 7}')[0] == BatchQuestion(question="q", k=3, id=7)
    assert parse('"just a question"')[0] == BatchQuestion(question="just a question")
    assert "malformed JSON" in parse("{nope")[1]
    assert "question" in parse('{"k": 3}')[1]
    assert "k" in parse('{"question": "q", "k": 0}')[1]
    assert "expected a JSON object" in parse("[1, 2]")[1]
    assert parse_line("   ", 1, jsonl=True) is None


def test_a_jsonl_file_keeps_its_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "questions.jsonl"
    path.write_text('{"question": "a"}\n\n{"oops"\n"b"\n', encoding="utf-8")
    inputs = read_questions(path)
    assert [entry.line for entry in inputs] == [1, 3, 4]
    assert [entry.question.question if entry.question else None for entry in inputs] == [
        "a",
        None,
        "b",
    ]
