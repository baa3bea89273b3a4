"""The generate stage: ``documents_retrieved`` -> ``answer_generated``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Final

import dspy

from ragbus.dspy_program import call_streaming, can_stream, load_program, module_fingerprint
from ragbus.errors import PermanentError
from ragbus.events import Envelope
from ragbus.lm import is_extractive, lm_scope, reported_usage
from ragbus.payloads.rag import (
    MAX_ANSWER_CHARS,
    AnswerGenerated,
    DocumentsRetrieved,
    RagEvent,
    Source,
    Turn,
)
from ragbus.streaming import Emit, TokenEmitter

logger = logging.getLogger(__name__)

#: Version of the default prompt (signature and instructions); part of the fingerprint.
#: Raise it whenever :class:`AnswerQuestion` changes, so cached answers are not reused.
PROMPT_VERSION: Final = 1

#: The answer when retrieval found no passage; the LM is not called then.
NO_PASSAGES_ANSWER: Final = (
    "The documents contain nothing about this question, so it cannot be answered from them."
)
#: The reasoning given with :data:`NO_PASSAGES_ANSWER`.
NO_PASSAGES_REASONING: Final = "No passage matched the question, so no LM was asked to answer it."


class AnswerQuestion(dspy.Signature):  # type: ignore[misc]
    """Answer the question using only the context passages. If the passages do not
    contain the answer, say that they do not."""

    context: str = dspy.InputField(desc="passages retrieved for the question, numbered, best first")
    question: str = dspy.InputField()
    history: dspy.History = dspy.InputField(desc="earlier turns of this conversation")
    answer: str = dspy.OutputField(desc="a short answer drawn from the context")


def _history(turns: list[Turn]) -> dspy.History:
    return dspy.History(messages=[{"question": t.question, "answer": t.answer} for t in turns])


def _cut(text: str, limit: int = MAX_ANSWER_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class GenerateHandler:
    """Answers a question from its retrieved passages with a DSPy module.

    For each ``documents_retrieved`` event it returns one ``answer_generated`` event
    (derived: deterministic id, same correlation) whose sources are the passages given
    to the LM. When there are no passages it does not call the LM and answers that the
    documents do not cover the question. DSPy and LM exceptions propagate unchanged;
    the runtime classifies them.

    The module is called as ``await module.acall(context=[...], question=...,
    history=dspy.History(...))`` under :func:`ragbus.lm.lm_scope`, so the LM is set
    for this call only and DSPy keeps no history. It must return a prediction with an
    ``answer`` field (and optionally ``reasoning``).

    With ``emit``, the module runs under ``dspy.streamify`` with a fresh
    ``StreamListener`` on the ``answer`` field for every call (a listener shared by
    concurrent calls streams nothing), and each piece of the answer is emitted as a
    transient ``answer_token`` event while the LM writes it (see
    :class:`~ragbus.streaming.TokenEmitter`); the returned ``answer_generated`` is the
    same as without streaming.

    Parameters:
        lm: the LM to call (see :func:`ragbus.lm.build_lm`).
        module: the DSPy module (default: ``dspy.ChainOfThought(AnswerQuestion)``).
        program: a saved or compiled program (``module.save``, ``ragbus optimize``) to
            load into the module (default: none, the module as written).
        record_history: keep DSPy's call history and trace, for debugging
            (default false).
        emit: publishes interim events (default: none, the answer is not streamed).
        fallback_lm: an LM to answer with while the primary's breaker is open; the
            runtime calls :attr:`fallback` then, whose answers say ``fallback: true``
            (default: none, the stage pauses).
        is_fallback: this handler is another's fallback: its answers say so
            (default false).
    """

    def __init__(
        self,
        lm: dspy.BaseLM,
        *,
        module: dspy.Module | None = None,
        program: Path | None = None,
        record_history: bool = False,
        emit: Emit | None = None,
        fallback_lm: dspy.BaseLM | None = None,
        is_fallback: bool = False,
    ) -> None:
        self.lm = lm
        self.emit = emit
        self.is_fallback = is_fallback
        self.fallback: GenerateHandler | None = (
            GenerateHandler(
                fallback_lm,
                module=module,
                program=program,
                record_history=record_history,
                emit=emit,
                is_fallback=True,
            )
            if fallback_lm is not None
            else None
        )
        self.module = module if module is not None else dspy.ChainOfThought(AnswerQuestion)
        if program is not None:
            load_program(self.module, program)
        # DSPy's adapter rebuilds the signature without its history field on every call
        # (about 1.5 ms); the default module has a twin without it for history-less
        # questions, the common case. A loaded program has its own demos and
        # instructions, which the twin would not: then the module answers every question.
        self._without_history: dspy.Module | None = (
            dspy.ChainOfThought(AnswerQuestion.delete("history"))
            if module is None and program is None
            else None
        )
        self.record_history = record_history
        if emit is not None and not can_stream(self.module, "answer"):
            logger.warning(
                "the generate module %s has no single predictor with an `answer` output: "
                "answers are not streamed",
                type(self.module).__qualname__,
            )
            self.emit = None
        self._fingerprint = module_fingerprint(self.module, lm, label=f"p{PROMPT_VERSION}")

    @property
    def fingerprint(self) -> str:
        """What determines this stage's output besides its input: the model and its
        settings, :data:`PROMPT_VERSION` and the module's signatures, instructions and
        demos (a part of cache keys)."""
        return self._fingerprint

    async def __call__(self, event: Envelope) -> list[Envelope]:
        """Answer the question of ``event`` from its passages.

        Raises :class:`~ragbus.errors.PermanentError` for an event that is not a
        ``documents_retrieved``.

        Parameters:
            event: a ``documents_retrieved`` event.
        """
        if event.type != RagEvent.DOCUMENTS_RETRIEVED:
            raise PermanentError(f"the generate stage takes documents_retrieved, not {event.type}")
        retrieved = event.payload_as(DocumentsRetrieved)
        started = time.perf_counter()
        if retrieved.passages:
            inputs: dict[str, Any] = {
                "context": [passage.text for passage in retrieved.passages],
                "question": retrieved.question,
            }
            module = self._without_history
            if module is None or retrieved.history:
                module = self.module
                inputs["history"] = _history(retrieved.history)
            with lm_scope(self.lm, record_history=self.record_history), reported_usage():
                if self.emit is None:
                    prediction = await module.acall(**inputs)
                else:
                    tokens = TokenEmitter(event, self.emit, RagEvent.ANSWER_TOKEN)
                    prediction = await call_streaming(module, inputs, "answer", tokens)
            answer = str(prediction.answer).strip()
            reasoning = str(prediction.get("reasoning", "") or "").strip()
        else:
            answer, reasoning = NO_PASSAGES_ANSWER, NO_PASSAGES_REASONING
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        payload = AnswerGenerated(
            question=retrieved.question,
            answer=_cut(answer),
            reasoning=_cut(reasoning),
            sources=[
                Source(doc_id=p.doc_id, title=p.title, score=p.score) for p in retrieved.passages
            ],
            model=self.lm.model,
            extractive=is_extractive(self.lm),
            fallback=self.is_fallback,
            timings_ms={**retrieved.timings_ms, "generate": elapsed_ms},
        )
        return [event.derive(RagEvent.ANSWER_GENERATED, payload)]
