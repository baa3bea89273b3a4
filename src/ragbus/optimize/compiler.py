"""Scoring the RAG generate program on examples and compiling it with a DSPy optimizer.

The program scored and compiled is the generate stage's own
(:class:`~ragbus.handlers.generate.GenerateHandler`'s module), and it is scored
through the handler, as a worker serves it: before, the program as written; after,
the written program file loaded the way ``RAGBUS_PROGRAM`` loads it. The passages of
an example without ``context`` come from the configured retriever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import dspy

from ragbus.events import new_event
from ragbus.files import PRIVATE_MODE
from ragbus.handlers.generate import GenerateHandler
from ragbus.lm import lm_scope
from ragbus.optimize.metrics import GOOD_ENOUGH, Metric
from ragbus.optimize.trainset import QAExample
from ragbus.payloads.rag import (
    MAX_PASSAGE_CHARS,
    AnswerGenerated,
    DocumentsRetrieved,
    Passage,
    QueryReceived,
    RagEvent,
)
from ragbus.retrieval.retriever import Retriever

#: Worked examples (demos) a compiled program holds at most, bootstrapped and labelled.
MAX_DEMOS: Final = 4
#: Examples scored at once.
SCORING_CONCURRENCY: Final = 8


class OptimizerKind(StrEnum):
    """The optimizers ``ragbus optimize --optimizer`` offers."""

    BOOTSTRAP = "bootstrap"
    MIPRO = "mipro"


@dataclass(frozen=True)
class Prepared:
    """An example with the passages the program answers it from."""

    example: QAExample
    passages: tuple[Passage, ...]

    def as_dspy(self) -> dspy.Example:
        """The example as DSPy's optimizers take it (inputs: context and question)."""
        return dspy.Example(
            context=[passage.text for passage in self.passages],
            question=self.example.question,
            answer=self.example.answer,
        ).with_inputs("context", "question")


async def prepare(examples: Sequence[QAExample], retriever: Retriever, k: int) -> list[Prepared]:
    """``examples`` with their passages: their own ``context``, or else the ``k`` that
    ``retriever`` finds for the question.

    Parameters:
        examples: the examples.
        retriever: the configured retriever.
        k: passages per question (``RAGBUS_TOP_K``).
    """
    prepared = []
    for example in examples:
        if example.context is not None:
            passages = tuple(
                Passage(
                    doc_id=f"context-{number}",
                    text=text[:MAX_PASSAGE_CHARS],
                    score=1.0,
                )
                for number, text in enumerate(example.context, start=1)
            )
        else:
            passages = tuple(await retriever.search(example.question, k))
        prepared.append(Prepared(example, passages))
    return prepared


async def score(handler: GenerateHandler, examples: Sequence[Prepared], metric: Metric) -> float:
    """The mean of ``metric`` over ``examples`` answered by ``handler`` (0 to 1).

    Parameters:
        handler: the generate stage's handler.
        examples: the examples, with their passages.
        metric: scores an answer against the example's.
    """
    limit = asyncio.Semaphore(SCORING_CONCURRENCY)

    async def one(prepared: Prepared) -> float:
        question = new_event(
            RagEvent.QUERY_RECEIVED, QueryReceived(question=prepared.example.question)
        )
        retrieved = question.derive(
            RagEvent.DOCUMENTS_RETRIEVED,
            DocumentsRetrieved(
                question=prepared.example.question, passages=list(prepared.passages)
            ),
        )
        async with limit:
            (answered,) = await handler(retrieved)
        answer = answered.payload_as(AnswerGenerated).answer
        prediction = dspy.Prediction(answer=answer)
        # a judge calls the LM synchronously: keep it off the event loop
        return float(await asyncio.to_thread(metric, prepared.as_dspy(), prediction))

    scores = await asyncio.gather(*(one(prepared) for prepared in examples))
    return sum(scores) / len(scores) if scores else 0.0


def _optimizer(
    kind: OptimizerKind, lm: dspy.BaseLM, metric: Metric, threshold: float | None
) -> Any:
    if kind == OptimizerKind.MIPRO:
        from dspy.teleprompt import MIPROv2

        return MIPROv2(
            metric=metric,
            prompt_model=lm,
            task_model=lm,
            auto="light",
            max_bootstrapped_demos=MAX_DEMOS,
            max_labeled_demos=MAX_DEMOS,
            metric_threshold=threshold,
            num_threads=SCORING_CONCURRENCY,
            verbose=False,
        )
    from dspy.teleprompt import BootstrapFewShot

    return BootstrapFewShot(
        metric=metric,
        metric_threshold=threshold,
        max_bootstrapped_demos=MAX_DEMOS,
        max_labeled_demos=MAX_DEMOS,
    )


def compile_program(
    lm: dspy.BaseLM,
    train: Sequence[Prepared],
    metric: Metric,
    *,
    optimizer: OptimizerKind = OptimizerKind.BOOTSTRAP,
    exact: bool = False,
) -> dspy.Module:
    """The generate stage's program compiled on ``train`` with ``optimizer``, calling
    ``lm``; blocking (DSPy's optimizers are synchronous: run it in a thread).

    Raises ``ImportError`` for MIPROv2 without optuna (``pip install 'ragbus[optimize]'``).

    Parameters:
        lm: the LM the program is compiled for (and, for MIPROv2, that proposes
            instructions).
        train: the training examples with their passages.
        metric: what a good answer scores.
        optimizer: BootstrapFewShot (default) or MIPROv2 (``auto="light"``).
        exact: whether ``metric`` is all or nothing (exact match); otherwise a demo is
            kept when it scores at least :data:`GOOD_ENOUGH`.
    """
    student = GenerateHandler(lm).module
    chosen = _optimizer(optimizer, lm, metric, None if exact else GOOD_ENOUGH)
    examples = [prepared.as_dspy() for prepared in train]
    # DSPy warns on every call that the generate signature's history is not given:
    # examples are single questions, as most questions are.
    quiet = logging.getLogger("dspy.predict.predict")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        # bootstrapping reads DSPy's trace, which the stage's scope turns off
        with lm_scope(lm, record_history=True):
            if optimizer == OptimizerKind.MIPRO:
                compiled = chosen.compile(
                    student, trainset=examples, requires_permission_to_run=False
                )
            else:
                compiled = chosen.compile(student, trainset=examples)
    finally:
        quiet.setLevel(level)
    return compiled


def save_program(program: dspy.Module, path: Path) -> None:
    """Write ``program`` to ``path`` (DSPy's JSON state) whole and private (``0600``):
    it holds the examples' questions and passages.

    Parameters:
        program: a compiled program.
        path: the file (its folder is created if missing).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".json"
    )
    os.close(descriptor)
    try:
        program.save(temporary)
        os.chmod(temporary, PRIVATE_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def demo_count(program: dspy.Module) -> int:
    """How many worked examples (demos) the predictors of ``program`` hold."""
    return sum(len(predictor.demos) for predictor in program.predictors())
