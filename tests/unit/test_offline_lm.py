"""The offline extractive LM, through real DSPy modules and adapters."""

from __future__ import annotations

import asyncio
import re
import time

import dspy
import pytest
from dspy.lm15 import Message, Request, StreamDeltaEvent, StreamEndEvent, StreamStartEvent
from dspy.streaming import StreamListener, StreamResponse

from ragbus.config import Settings
from ragbus.config.settings import OFFLINE_MODEL
from ragbus.lm import (
    AsyncExtractiveEngine,
    ExtractiveEngine,
    build_lm,
    is_extractive,
    lm_scope,
    offline_lm,
)
from ragbus.lm.compose import NO_ANSWER
from ragbus.lm.prompt import parse_prompt, split_list_value

CONTEXT = [
    "Cats sleep for about sixteen hours a day. They are most active at dawn and dusk.",
    "Dogs bark to warn their owners about strangers. A dog wags its tail when it is happy.",
    "Parrots can live for more than fifty years in captivity.",
]


class AnswerQuestion(dspy.Signature):  # type: ignore[misc]
    """Answer the question using only the context passages."""

    context: list[str] = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


def context_sentences() -> set[str]:
    return {s for passage in CONTEXT for s in re.split(r"(?<=\.)\s+", passage)}


async def test_chain_of_thought_round_trip_parses_answer_and_reasoning() -> None:
    lm = offline_lm()
    with lm_scope(lm):
        prediction = await dspy.ChainOfThought(AnswerQuestion).acall(
            context=CONTEXT, question="How long do cats sleep each day?"
        )

    assert prediction.answer.startswith("Cats sleep for about sixteen hours a day.")
    sentences = re.split(r"(?<=\.)\s+", prediction.answer)
    assert set(sentences) <= context_sentences()
    assert "extractive" in prediction.reasoning
    assert "[1]" in prediction.reasoning
    assert "cats" in prediction.reasoning and "sleep" in prediction.reasoning


async def test_predict_round_trip_with_a_string_signature() -> None:
    lm = offline_lm()
    with lm_scope(lm):
        prediction = await dspy.Predict("context: list[str], question -> answer").acall(
            context=CONTEXT, question="Why do dogs bark?"
        )

    assert prediction.answer == "Dogs bark to warn their owners about strangers."
    assert "reasoning" not in prediction


async def test_context_given_to_a_str_field_is_read_from_its_numbered_rendering() -> None:
    lm = offline_lm()
    with lm_scope(lm):
        prediction = await dspy.Predict("context, question -> answer").acall(
            context=CONTEXT, question="How long do parrots live?"
        )

    assert prediction.answer == "Parrots can live for more than fifty years in captivity."


async def test_every_requested_output_field_is_produced_with_its_type() -> None:
    lm = offline_lm()
    with lm_scope(lm):
        prediction = await dspy.Predict(
            "context: list[str], question -> rationale, answer, found: bool, quotes: list[str]"
        ).acall(context=CONTEXT, question="When is a dog happy?")

    assert prediction.answer == "A dog wags its tail when it is happy."
    assert prediction.found is True
    assert prediction.quotes == ["A dog wags its tail when it is happy."]
    assert "passage [2]" in prediction.rationale


async def test_json_adapter_gets_a_json_reply() -> None:
    lm = offline_lm()
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter(), disable_history=True):
        prediction = await dspy.ChainOfThought(AnswerQuestion).acall(
            context=CONTEXT, question="How long do cats sleep?"
        )

    assert prediction.answer.startswith("Cats sleep for about sixteen hours a day.")
    assert "extractive" in prediction.reasoning


async def test_no_matching_sentence_gives_an_honest_non_answer() -> None:
    lm = offline_lm()
    with lm_scope(lm):
        prediction = await dspy.ChainOfThought(AnswerQuestion).acall(
            context=CONTEXT, question="What is the capital of France?"
        )

    assert prediction.answer == NO_ANSWER
    assert "no sentence in the 3 context passages" in prediction.reasoning
    assert "capital" in prediction.reasoning


async def test_an_empty_context_gives_an_honest_non_answer() -> None:
    lm = offline_lm()
    with lm_scope(lm):
        prediction = await dspy.ChainOfThought(AnswerQuestion).acall(
            context=[], question="How long do cats sleep?"
        )

    assert prediction.answer == NO_ANSWER
    assert "context is empty" in prediction.reasoning


async def test_metadata_says_the_answer_is_extractive() -> None:
    lm = offline_lm()
    with lm_scope(lm, record_history=True):
        await dspy.Predict(AnswerQuestion).acall(context=CONTEXT, question="Why do dogs bark?")

    response = lm.history[-1]["response"]
    assert lm.model == OFFLINE_MODEL == "offline/extractive"
    assert response.model == OFFLINE_MODEL
    assert response.provider_data == {
        "offline": True,
        "extractive": True,
        "answer_found": True,
        "passages_quoted": [2],
    }
    assert response.usage.output_tokens > 0
    assert is_extractive(lm)


def raw_request(question: str) -> Request:
    context = '["Cats sleep for about sixteen hours a day.", "Dogs bark at strangers."]'
    user = (
        f"[[ ## context ## ]]\n{context}\n\n[[ ## question ## ]]\n{question}\n\n"
        "Respond with the corresponding output fields, starting with the field "
        "`[[ ## reasoning ## ]]`, then `[[ ## answer ## ]]`, and then ending with the marker "
        "for `[[ ## completed ## ]]`."
    )
    return Request(model=OFFLINE_MODEL, messages=(Message.user(user),))


def test_engine_reply_follows_the_chat_adapter_format() -> None:
    response = ExtractiveEngine().complete(raw_request("Who do dogs bark at?"))

    text = response.text
    assert text.startswith("[[ ## reasoning ## ]]\n")
    assert "\n\n[[ ## answer ## ]]\nDogs bark at strangers.\n\n" in text
    assert text.endswith("[[ ## completed ## ]]")
    assert response.finish_reason == "stop"
    assert response.provider_data["extractive"] is True


def test_sync_stream_emits_small_deltas_that_add_up_to_the_reply() -> None:
    engine = ExtractiveEngine()
    request = raw_request("How long do cats sleep?")

    events = list(engine.stream(request))

    assert isinstance(events[0], StreamStartEvent)
    assert isinstance(events[-1], StreamEndEvent)
    deltas = [e.delta.text for e in events if isinstance(e, StreamDeltaEvent)]
    assert len(deltas) > 5
    assert all(len(d.split()) <= 3 for d in deltas)
    assert "".join(deltas) == engine.complete(request).text
    assert events[-1].provider_data["extractive"] is True


async def test_dspy_streaming_yields_several_answer_chunks() -> None:
    for question in ["How long do cats sleep?", "When is a dog happy?"]:
        program = dspy.streamify(
            dspy.ChainOfThought(AnswerQuestion),
            stream_listeners=[StreamListener(signature_field_name="answer")],
        )
        chunks: list[str] = []
        final = None
        with lm_scope(offline_lm()):
            async for item in program(context=CONTEXT, question=question):
                if isinstance(item, StreamResponse):
                    assert item.signature_field_name == "answer"
                    chunks.append(item.chunk)
                elif isinstance(item, dspy.Prediction):
                    final = item

        assert final is not None
        assert len(chunks) >= 3
        assert "".join(chunks) == final.answer


async def test_async_latency_is_awaited_without_blocking_the_loop() -> None:
    lm = offline_lm(latency_ms=500)
    module = dspy.Predict(AnswerQuestion)

    async def ask() -> str:
        with lm_scope(lm):
            prediction = await module.acall(context=CONTEXT, question="Why do dogs bark?")
        return str(prediction.answer)

    started = time.perf_counter()
    answers = await asyncio.gather(*(ask() for _ in range(5)))
    elapsed = time.perf_counter() - started

    assert set(answers) == {"Dogs bark to warn their owners about strangers."}
    # five overlapping waits, not 2.5 s in a row (the margin is for a loaded machine)
    assert 0.5 <= elapsed < 2.0


def test_sync_latency_sleeps() -> None:
    engine = ExtractiveEngine(latency_ms=100)

    started = time.perf_counter()
    engine.complete(raw_request("Who do dogs bark at?"))

    assert time.perf_counter() - started >= 0.1


async def test_streaming_spreads_latency_over_the_deltas() -> None:
    engine = AsyncExtractiveEngine(latency_ms=800)

    started = time.perf_counter()
    arrivals = [time.perf_counter() - started async for _ in engine.stream(raw_request("cats?"))]

    assert arrivals[-1] >= 0.8
    # the first delta waits one share of the latency (50 ms here), not all of it
    assert arrivals[1] < 0.4


def test_negative_latency_is_refused() -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        ExtractiveEngine(latency_ms=-1)


async def test_lm_scope_keeps_no_history_unless_asked() -> None:
    lm = offline_lm()
    module = dspy.Predict(AnswerQuestion)
    for _ in range(3):
        with lm_scope(lm):
            await module.acall(context=CONTEXT, question="Why do dogs bark?")
    assert lm.history == []
    assert module.history == []

    with lm_scope(lm, record_history=True):
        await module.acall(context=CONTEXT, question="Why do dogs bark?")
    assert len(lm.history) == 1


def test_build_lm_gives_the_offline_lm_by_default() -> None:
    lm = build_lm(Settings(_env_file=None, lm_latency_ms=25))

    assert lm.model == OFFLINE_MODEL
    assert is_extractive(lm)
    assert isinstance(lm.engine, ExtractiveEngine)
    assert lm.engine.latency_ms == 25


def test_build_lm_gives_a_configured_model_without_dspy_retries_or_cache() -> None:
    settings = Settings(
        _env_file=None,
        lm_model="openai/gpt-4o-mini",
        lm_api_base="http://127.0.0.1:1/v1",
        lm_api_key="sk-test",
        lm_temperature=0.3,
        lm_max_tokens=256,
    )

    lm = build_lm(settings)

    assert lm.model == "openai/gpt-4o-mini"
    assert not is_extractive(lm)
    assert lm.num_retries == 0
    assert lm.cache is False
    assert lm.kwargs["temperature"] == 0.3
    assert lm.kwargs["max_tokens"] == 256
    assert lm.kwargs["api_base"] == "http://127.0.0.1:1/v1"
    assert lm.kwargs["api_key"] == "sk-test"


def test_an_lm_merely_named_offline_is_not_extractive() -> None:
    assert not is_extractive(dspy.LM("offline/extractive", num_retries=0))


def test_list_values_are_read_in_every_rendering() -> None:
    assert split_list_value('["a b", "c"]') == ["a b", "c"]
    assert split_list_value("[1] «first one»\n[2] «second»") == ["first one", "second"]
    multi = "[1] «««\n    line one\n    line two\n»»»\n[2] «short»"
    assert split_list_value(multi) == ["line one\nline two", "short"]
    assert split_list_value("«only one»") == ["only one"]
    assert split_list_value("N/A") == []


def test_prompt_parsing_finds_the_question_and_the_requested_fields() -> None:
    system = (
        "Your input fields are:\n1. `passages` (list[str]): \n2. `query` (str):\n"
        "Your output fields are:\n1. `answer` (str): \n2. `ok` (bool):\n"
        "All interactions will be structured in the following way"
    )
    user = (
        '[[ ## passages ## ]]\n["p one", "p two"]\n\n[[ ## query ## ]]\nwhat?\n\n'
        "Respond with the corresponding output fields, starting with the field "
        "`[[ ## answer ## ]]`, then `[[ ## ok ## ]]` (must be formatted as a valid Python bool), "
        "and then ending with the marker for `[[ ## completed ## ]]`."
    )

    prompt = parse_prompt(system, user)

    assert prompt.question() == "what?"
    assert prompt.passages() == ["p one", "p two"]
    assert [(o.name, o.type) for o in prompt.outputs] == [("answer", "str"), ("ok", "bool")]
    assert not prompt.json_output
