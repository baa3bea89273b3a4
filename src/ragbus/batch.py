"""Batch answering: many questions, a bound on how many are open at once, results in the
order of the input, and each question's error kept with it instead of failing the batch.

:func:`read_questions` reads a file (``.txt``: one question a line; ``.jsonl``: one JSON
object a line with ``question`` and optionally ``k`` and ``id``); :func:`answer_in_order`
asks them through a :class:`~ragbus.client.Client` and yields one
:class:`BatchResult` per question, in input order, as soon as it and every question
before it are done. ``Client.ask_many`` and ``ragbus ask --file`` are built on it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragbus.errors import ConfigurationError, QueueFullError
from ragbus.events import describe_validation_error
from ragbus.json_input import MalformedJSON, parse_json

if TYPE_CHECKING:
    from ragbus.client import Answer, Client

#: Questions answered at once by default.
DEFAULT_CONCURRENCY: Final = 8

#: Questions started ahead of the oldest unfinished one, per unit of concurrency: a slow
#: question holds back the output, not the work behind it.
LOOKAHEAD: Final = 4


class BatchQuestion(BaseModel):
    """One question of a batch.

    Parameters:
        question: the question.
        k: passages to retrieve (default: the retrieve stage's setting).
        id: the caller's name for it, copied to its result (default none).
    """

    model_config = ConfigDict(extra="forbid")

    question: str
    k: int | None = Field(default=None, ge=1, le=50)
    id: str | int | None = None


@dataclass(frozen=True)
class BatchInput:
    """One line of a batch: a question, or why the line is not one.

    Parameters:
        line: its line number in the file (1-based), or its position in a list (1-based).
        question: the question (None when the line is invalid).
        error: why the line is not a question (default "").
    """

    line: int
    question: BatchQuestion | None
    error: str = ""


@dataclass(frozen=True)
class BatchResult:
    """The outcome of one question: its answer, or its error.

    Parameters:
        index: its position in the batch (0-based).
        source: the input it came from.
        answer: the answer (None when it failed).
        error_type: the error's kind when it failed (``AnswerTimeout``, ``invalid``, ...).
        error: what went wrong (default "").
    """

    index: int
    source: BatchInput
    answer: Answer | None = None
    error_type: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the question was answered."""
        return self.answer is not None

    def to_json(self) -> dict[str, Any]:
        """One JSON line: ``index``, ``line``, ``id`` (if given), ``question``, then
        ``answer``, ``sources`` and ``correlation_id``, or ``error``."""
        question = self.source.question
        row: dict[str, Any] = {"index": self.index, "line": self.source.line}
        if question is not None:
            if question.id is not None:
                row["id"] = question.id
            row["question"] = question.question
        if self.answer is not None:
            payload = self.answer.answer.payload
            row["answer"] = payload["answer"]
            row["sources"] = [source["doc_id"] for source in payload["sources"]]
            row["correlation_id"] = str(self.answer.answer.correlation_id)
        else:
            row["error"] = {"type": self.error_type, "message": self.error}
        return row


def parse_line(text: str, line: int, *, jsonl: bool) -> BatchInput | None:
    """The question on one line of a batch file (None for a blank line).

    Parameters:
        text: the line, without its newline.
        line: its number (1-based).
        jsonl: a JSON-lines file (an object with ``question``, or a JSON string), else
            plain text (the line is the question).
    """
    if not text.strip():
        return None
    if not jsonl:
        return BatchInput(line, BatchQuestion(question=text.strip()))
    try:
        data = parse_json(text)
    except MalformedJSON as exc:
        return BatchInput(line, None, f"malformed JSON: {exc}")
    if isinstance(data, str):
        data = {"question": data}
    if not isinstance(data, dict):
        return BatchInput(line, None, "expected a JSON object with a `question`, or a string")
    try:
        return BatchInput(line, BatchQuestion.model_validate(data))
    except ValidationError as exc:
        return BatchInput(line, None, describe_validation_error(exc))


def read_questions(path: Path) -> list[BatchInput]:
    """The questions of ``path``: ``.jsonl`` is JSON lines, anything else plain text, one
    question a line; blank lines are skipped. A line that is not a question is kept as
    an input with its error, so its result says why.

    Raises:
        ConfigurationError: the file cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the questions in {path}: {exc}") from None
    jsonl = path.suffix.lower() == ".jsonl"
    parsed = (
        parse_line(line, number, jsonl=jsonl) for number, line in enumerate(text.splitlines(), 1)
    )
    return [entry for entry in parsed if entry is not None]


def as_inputs(questions: Iterable[str | BatchQuestion]) -> list[BatchInput]:
    """Questions given in code, as batch inputs numbered from 1."""
    return [
        BatchInput(
            number, item if isinstance(item, BatchQuestion) else BatchQuestion(question=item)
        )
        for number, item in enumerate(questions, 1)
    ]


async def _answer_one(
    client: Client, index: int, source: BatchInput, *, k: int | None, timeout: float
) -> BatchResult:
    """Answer one input; every failure of the question becomes its result's error. A
    refusal of a full queue is waited out as it asks, within ``timeout``."""
    question = source.question
    if question is None:
        return BatchResult(index, source, error_type="invalid", error=source.error)
    loop = asyncio.get_running_loop()
    ends = loop.time() + timeout
    while True:
        try:
            answer = await client.ask(
                question.question,
                k=question.k if question.k is not None else k,
                timeout=max(ends - loop.time(), 0.1),
            )
            return BatchResult(index, source, answer=answer)
        except QueueFullError as exc:
            wait = exc.retry_after or 1.0
            if loop.time() + wait >= ends:
                return BatchResult(index, source, error_type=type(exc).__name__, error=str(exc))
            await asyncio.sleep(wait)
        except ValidationError as exc:
            reason = describe_validation_error(exc).removeprefix("invalid event: ")
            return BatchResult(index, source, error_type="invalid", error=reason)
        except Exception as exc:  # one question's failure is its own, not the batch's
            return BatchResult(index, source, error_type=type(exc).__name__, error=str(exc))


async def answer_in_order(
    client: Client,
    inputs: Iterable[BatchInput],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    k: int | None = None,
    timeout: float = 60.0,
) -> AsyncGenerator[BatchResult, None]:
    """Ask every input through ``client`` and yield their results in input order.

    At most ``concurrency`` questions are asked at once, and at most
    ``LOOKAHEAD * concurrency`` are started ahead of the oldest unfinished one, so memory
    stays bounded however long the batch.

    Parameters:
        client: an open client.
        inputs: the questions (see :func:`read_questions`, :func:`as_inputs`).
        concurrency: questions asked at once (default 8).
        k: passages to retrieve when a question does not say (default: the stage's).
        timeout: seconds each question may take, also its deadline (default 60).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    slots = asyncio.Semaphore(concurrency)

    async def bounded(index: int, source: BatchInput) -> BatchResult:
        async with slots:
            return await _answer_one(client, index, source, k=k, timeout=timeout)

    window: deque[asyncio.Task[BatchResult]] = deque()
    pending = enumerate(inputs)
    try:
        while True:
            while len(window) < LOOKAHEAD * concurrency:
                entry = next(pending, None)
                if entry is None:
                    break
                window.append(asyncio.create_task(bounded(*entry)))
            if not window:
                return
            yield await window.popleft()
    finally:
        for task in window:  # the caller stopped early: its questions are cancelled
            task.cancel()
        await asyncio.gather(*window, return_exceptions=True)
