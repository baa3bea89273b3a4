"""The generate stage: ``documents_retrieved`` -> ``answer_generated``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from typing import Any, Final

import dspy
from dspy.streaming import StreamListener, StreamResponse
from dspy.streaming.streaming_listener import find_predictor_for_stream_listeners

from ragbus.errors import PermanentError
from ragbus.events import (
    MAX_ANSWER_CHARS,
    AnswerGenerated,
    DocumentsRetrieved,
    Envelope,
    EventType,
    Source,
    Turn,
)
from ragbus.handlers.emit import Emit, TokenEmitter
from ragbus.lm import is_extractive, lm_scope

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


def _module_description(module: dspy.Module) -> list[dict[str, Any]]:
    described = []
    for name, predictor in module.named_predictors():
        signature = predictor.signature
        described.append(
            {
                "name": name,
                "signature": signature.signature,
                "types": {key: str(field.annotation) for key, field in signature.fields.items()},
                "state": predictor.dump_state(),
            }
        )
    return described


def _can_stream_answer(module: dspy.Module) -> bool:
    """Whether a ``StreamListener`` on ``answer`` finds exactly one predictor in ``module``."""
    try:
        find_predictor_for_stream_listeners(module, [StreamListener(signature_field_name="answer")])
    except (ValueError, TypeError):  # no such field (DSPy fails with a TypeError), or two
        return False
    return True


async def _streamed(
    module: dspy.Module, inputs: dict[str, Any], tokens: TokenEmitter
) -> dspy.Prediction:
    """Call ``module`` with ``inputs`` under ``dspy.streamify``, sending each piece of the
    ``answer`` field to ``tokens``; returns the final prediction."""
    program = dspy.streamify(
        module,
        stream_listeners=[StreamListener(signature_field_name="answer")],
        is_async_program=True,
    )
    prediction: dspy.Prediction | None = None
    async with contextlib.aclosing(program(**inputs)) as stream:
        async for value in stream:
            if isinstance(value, StreamResponse):
                await tokens.add(str(value.chunk))
            elif isinstance(value, dspy.Prediction):
                prediction = value
    if prediction is None:
        raise RuntimeError("the streamed DSPy program ended without a prediction")
    return prediction


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
    :class:`~ragbus.handlers.emit.TokenEmitter`); the returned ``answer_generated`` is
    the same as without streaming.

    Parameters:
        lm: the LM to call (see :func:`ragbus.lm.build_lm`).
        module: the DSPy module (default: ``dspy.ChainOfThought(AnswerQuestion)``).
        record_history: keep DSPy's call history and trace, for debugging
            (default false).
        emit: publishes interim events (default: none, the answer is not streamed);
            the wiring passes ``ragbus.bus.base.emitter(bus)``.
    """

    def __init__(
        self,
        lm: dspy.BaseLM,
        *,
        module: dspy.Module | None = None,
        record_history: bool = False,
        emit: Emit | None = None,
    ) -> None:
        self.lm = lm
        self.emit = emit
        self.module = module if module is not None else dspy.ChainOfThought(AnswerQuestion)
        # DSPy's adapter rebuilds the signature without its history field on every call
        # (about 1.5 ms); the default module has a twin without it for history-less
        # questions, the common case.
        self._without_history: dspy.Module | None = (
            dspy.ChainOfThought(AnswerQuestion.delete("history")) if module is None else None
        )
        self.record_history = record_history
        if emit is not None and not _can_stream_answer(self.module):
            logger.warning(
                "the generate module %s has no single predictor with an `answer` output: "
                "answers are not streamed",
                type(self.module).__qualname__,
            )
            self.emit = None
        self._fingerprint = self._compute_fingerprint()

    def _compute_fingerprint(self) -> str:
        settings = {k: v for k, v in self.lm.kwargs.items() if not str(k).startswith("api_")}
        described = {
            "model": self.lm.model,
            "settings": settings,
            "prompt_version": PROMPT_VERSION,
            "module": type(self.module).__qualname__,
            "predictors": _module_description(self.module),
        }
        encoded = json.dumps(described, sort_keys=True, default=str).encode()
        return f"{self.lm.model}:p{PROMPT_VERSION}:{hashlib.sha256(encoded).hexdigest()[:16]}"

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
        if event.type != EventType.DOCUMENTS_RETRIEVED:
            raise PermanentError(f"the generate stage takes documents_retrieved, not {event.type}")
        retrieved: DocumentsRetrieved = event.typed_payload()
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
            with lm_scope(self.lm, record_history=self.record_history):
                if self.emit is None:
                    prediction = await module.acall(**inputs)
                else:
                    prediction = await _streamed(module, inputs, TokenEmitter(event, self.emit))
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
            timings_ms={**retrieved.timings_ms, "generate": elapsed_ms},
        )
        return [event.derive(EventType.ANSWER_GENERATED, payload)]
