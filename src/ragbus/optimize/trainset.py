"""Training examples for the RAG program: reading, checking, splitting, and making them
from what ragbus exported.

A trainset is JSON lines, one example per line::

    {"question": "How do ferns reproduce?", "answer": "With spores.", "context": ["..."]}

``question`` and ``answer`` are required (an ``answer`` of ``null`` marks a line still
to be labelled: it is skipped and counted); ``context``, the passages to answer from,
is optional: without it the configured retriever finds them, as it would in production.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ragbus.errors import ConfigurationError
from ragbus.json_input import MalformedJSON, json_type_name, parse_json

#: Longest trainset file read, in bytes.
MAX_TRAINSET_BYTES: Final = 64 * 1024 * 1024


@dataclass(frozen=True)
class QAExample:
    """One labelled question.

    Parameters:
        question: the question.
        answer: the answer a good program gives (the gold answer).
        context: the passages to answer from (default none: retrieve them).
    """

    question: str
    answer: str
    context: tuple[str, ...] | None = None

    def as_line(self) -> dict[str, Any]:
        """The example as a trainset line (a JSON object)."""
        line: dict[str, Any] = {"question": self.question, "answer": self.answer}
        if self.context is not None:
            line["context"] = list(self.context)
        return line


@dataclass
class Trainset:
    """The examples of a trainset file and the lines that still need an answer.

    Parameters:
        examples: the labelled examples, in file order.
        unlabelled: line numbers whose ``answer`` is null.
    """

    examples: list[QAExample] = field(default_factory=list)
    unlabelled: list[int] = field(default_factory=list)


def _text(record: dict[str, Any], key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{where}: {key!r} must be a non-empty string")
    return value.strip()


def _context(record: dict[str, Any], where: str) -> tuple[str, ...] | None:
    value = record.get("context")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigurationError(f"{where}: 'context' must be a list of passage texts")
    return tuple(item for item in value if item.strip())


def parse_trainset(text: str, *, name: str = "trainset") -> Trainset:
    """The examples of trainset ``text`` (JSON lines; see the module docstring).

    Raises :class:`~ragbus.errors.ConfigurationError` naming the line of the first bad
    one (not JSON, not an object, a missing or empty question, a non-string answer).

    Parameters:
        text: the file's content.
        name: the file's name, for messages (default ``trainset``).
    """
    found = Trainset()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name}, line {number}"
        try:
            record = parse_json(line)
        except MalformedJSON as exc:
            raise ConfigurationError(f"{where}: not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise ConfigurationError(
                f'{where}: expected an object {{"question": ..., "answer": ...}}, '
                f"got {json_type_name(record)}"
            )
        question = _text(record, "question", where)
        context = _context(record, where)
        if record.get("answer") is None:
            found.unlabelled.append(number)
            continue
        found.examples.append(QAExample(question, _text(record, "answer", where), context))
    return found


def read_trainset(path: Path) -> Trainset:
    """The trainset in the file ``path`` (see :func:`parse_trainset`).

    Parameters:
        path: a JSON lines file of at most 64 MiB.
    """
    try:
        size = path.stat().st_size
        if size > MAX_TRAINSET_BYTES:
            raise ConfigurationError(
                f"trainset {path} is {size} bytes, over the limit of {MAX_TRAINSET_BYTES}"
            )
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"trainset file does not exist: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read trainset {path}: {exc}") from exc
    return parse_trainset(text, name=str(path))


def split(
    examples: Sequence[QAExample], holdout: float, *, seed: int = 0
) -> tuple[list[QAExample], list[QAExample]]:
    """``examples`` shuffled with ``seed`` and split into (train, held out).

    The held-out share is rounded, and both parts keep at least one example.

    Parameters:
        examples: at least two examples.
        holdout: the share held out for scoring, between 0 and 1 (exclusive).
        seed: the shuffle's seed (default 0: the same split every run).
    """
    if len(examples) < 2:
        raise ConfigurationError(
            f"a trainset needs at least 2 labelled examples (one to train on, one to score "
            f"on), it has {len(examples)}"
        )
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be between 0 and 1, got {holdout}")
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    held = min(len(shuffled) - 1, max(1, round(len(shuffled) * holdout)))
    return shuffled[held:], shuffled[:held]


# --- from what ragbus exported --------------------------------------------------------


def _envelope_line(envelope: dict[str, Any]) -> dict[str, Any] | None:
    """The trainset line of one event, if it carries a question."""
    payload = envelope.get("payload")
    question = payload.get("question") if isinstance(payload, dict) else None
    if not isinstance(question, str) or not question.strip():
        return None
    assert isinstance(payload, dict)
    line: dict[str, Any] = {"question": question.strip(), "answer": None}
    kind = envelope.get("type")
    if kind == "answer_generated" and isinstance(payload.get("answer"), str):
        line["answer"] = payload["answer"]
    elif kind == "documents_retrieved" and isinstance(payload.get("passages"), list):
        texts = [p.get("text") for p in payload["passages"] if isinstance(p, dict)]
        line["context"] = [text for text in texts if isinstance(text, str)]
    return line


def exported_lines(values: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """Trainset lines made from exported JSON values, in order, one per question.

    Understood: dead letters (``ragbus dlq export``: their ``envelope``), and events
    (``answer_generated`` as ``ragbus ask --json`` or ``ragbus send`` print them, or as
    the ``answers`` sink holds them; ``query_received``; ``documents_retrieved``, whose
    passages become the ``context``). An answer becomes the line's ``answer``, to be
    checked and corrected; a question without one gets ``"answer": null``, to be
    written. Anything else is skipped. A question seen before is not repeated.

    Parameters:
        values: parsed JSON values.
    """
    seen: set[str] = set()
    for value in values:
        if not isinstance(value, dict):
            continue
        envelope = value.get("envelope") if "envelope" in value else value
        line = _envelope_line(envelope) if isinstance(envelope, dict) else None
        if line is None or line["question"] in seen:
            continue
        seen.add(line["question"])
        yield line
