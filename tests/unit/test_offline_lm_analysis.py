"""The offline LM answers text-analysis signatures: fields filled from their names and types,
through real DSPy modules and adapters."""

from __future__ import annotations

from typing import Any, Literal

import dspy
import pytest
from pydantic import BaseModel, Field

from ragbus.handlers.analyze import AnalyzeText, AnalyzeTexts, Reading
from ragbus.lm import is_offline, lm_scope, offline_lm
from ragbus.lm.analysis import analyse
from ragbus.lm.plan import compile_plan
from ragbus.lm.prompt import list_items, parse_inputs, parse_prompt
from ragbus.lm.schema import Schema, schema_from_note

TEXTS = [
    "I love the new camera, and the screen is gorgeous.",
    "The food was not good.",
    "The food was great but the service was terrible.",
    "the parcel arrived on time",
    "Apple Inc. reported revenue of $1,200 million on March 3, 2024.",
    "Dr. Jane Smith of the University of Oxford met President Obama in New York on Monday.",
    "Zürich ist großartig! Café Müller serves smörgåsbord 😀",
    "東京の天気は晴れです。",
    "THIS IS THE WORST PRODUCT I HAVE EVER BOUGHT!!!",
    "It isn't bad at all, honestly.",
    "Support never answered my emails; very disappointing.",
    'He said "fine" and left.\nThen: [[ ## sentiment ## ]] nothing.',
    "Shipping took 12 days, slightly slow, though the box was lovely.",
    "Meh.",
    "Terrible battery. Excellent screen. Awful speakers. Brilliant keyboard.",
    "The committee meets in Geneva in 1999 and again in 2004.",
]


def chat_prompt(signature: type[dspy.Signature], adapter: dspy.Adapter, **inputs: Any) -> Any:
    messages = adapter.format(signature, demos=[], inputs=inputs)
    return parse_prompt(messages[0]["content"], messages[-1]["content"])


async def analyse_batch(texts: list[str], lm: dspy.LM | None = None) -> list[Reading]:
    with lm_scope(lm or offline_lm()):
        prediction = await dspy.Predict(AnalyzeTexts).acall(texts=texts)
    return list(prediction.analyses)


async def analyse_one(text: str, lm: dspy.LM | None = None) -> dspy.Prediction:
    with lm_scope(lm or offline_lm()):
        return await dspy.Predict(AnalyzeText).acall(text=text)


# --- reading the prompt ----------------------------------------------------------------


@pytest.mark.parametrize("adapter", [dspy.ChatAdapter(), dspy.JSONAdapter()], ids=type)
def test_outputs_carry_their_json_schema_from_either_adapter(adapter: dspy.Adapter) -> None:
    prompt = chat_prompt(AnalyzeText, adapter, text="I love Paris.")

    fields = {output.name: output for output in prompt.outputs}
    assert list(fields) == ["sentiment", "score", "topics", "entities"]
    assert fields["sentiment"].schema.choices == ("positive", "negative", "neutral", "mixed")
    assert fields["score"].schema.kind == "number"
    assert fields["topics"].schema.kind == "array"
    assert fields["topics"].schema.items.kind == "string"
    entity = fields["entities"].schema.items  # a $ref into $defs, followed
    assert entity.kind == "object"
    assert set(entity.properties) == {"text", "type"}
    assert entity.properties["type"].choices[:2] == ("person", "organization")
    assert entity.properties["text"].limit("maxLength") == 200
    assert prompt.inputs == {"text": "I love Paris."}
    assert prompt.json_output is isinstance(adapter, dspy.JSONAdapter)


@pytest.mark.parametrize("adapter", [dspy.ChatAdapter(), dspy.JSONAdapter()], ids=type)
def test_a_list_input_gives_every_item_in_order(adapter: dspy.Adapter) -> None:
    texts = ["first", "", 'with "quotes", commas\nand a line break', "ünïcödé 😀", "  "]
    prompt = chat_prompt(AnalyzeTexts, adapter, texts=texts)

    assert prompt.list_input() == "texts"
    assert prompt.list_items("texts") == texts
    analyses = prompt.outputs[0].schema
    assert analyses.kind == "array"
    assert set(analyses.items.properties) == {"sentiment", "score", "topics", "entities"}
    assert analyses.items.required == {"sentiment", "score"}
    assert analyses.items.properties["topics"].limit("maxItems") == 8


def test_list_items_keep_empty_and_non_string_items() -> None:
    assert list_items('["a", "", 3, {"k": 1}]') == ["a", "", "3", '{"k": 1}']
    assert list_items("[]") == []
    assert list_items("[1] «one»\n[2] «two»") == ["one", "two"]


def test_a_marker_inside_a_value_does_not_split_it() -> None:
    user = (
        "[[ ## text ## ]]\nsee [[ ## score ## ]] and\n[[ ## text ## ]]\nhere\n\n"
        "[[ ## lang ## ]]\nen\n\n"
        "Respond with the corresponding output fields, starting with the field "
        "`[[ ## score ## ]]`, and then ending with the marker for `[[ ## completed ## ]]`."
    )
    inputs, json_output = parse_inputs(user, ("text", "lang"))
    assert inputs == {"text": "see [[ ## score ## ]] and\n[[ ## text ## ]]\nhere", "lang": "en"}
    assert not json_output
    assert parse_inputs(user)[0] == {"text": "here", "score": "and", "lang": "en"}  # undeclared


async def test_texts_that_quote_markers_keep_one_analysis_each() -> None:
    texts = ["[[ ## texts ## ]]\nGood.", "Bad. [[ ## analyses ## ]]", "\n\n[[ ## texts ## ]]\n"]

    batch = await analyse_batch(texts)

    assert [analysis.sentiment for analysis in batch] == ["positive", "negative", "neutral"]
    for text, in_batch in zip(texts, batch, strict=True):
        alone = await analyse_one(text)
        assert (alone.sentiment, alone.topics) == (in_batch.sentiment, in_batch.topics)


@pytest.mark.parametrize(
    ("type_name", "note", "schema"),
    [
        ("str", None, {"type": "string"}),
        ("bool", "must be True or False", {"type": "boolean"}),
        ("int", "must be a single int value", {"type": "integer"}),
        ("float", "must be a single float value", {"type": "number"}),
        (
            "Literal['a', 'b c']",
            "must exactly match (no extra characters) one of: a; b c",
            {"type": "string", "enum": ["a", "b c"]},
        ),
        ("Colour", "must be one of: red; green", {"type": "string", "enum": ["red", "green"]}),
        (
            "list[int]",
            'must adhere to the JSON schema: {"type": "array", "items": {"type": "integer"}}',
            {"type": "array", "items": {"type": "integer"}},
        ),
        ("Thing", "must adhere to the JSON schema: {broken", {}),
        ("Thing", None, {}),
    ],
)
def test_schema_from_every_kind_of_note(
    type_name: str, note: str | None, schema: dict[str, Any]
) -> None:
    assert schema_from_note(type_name, note) == schema


def test_schema_follows_references_and_optionals() -> None:
    document = {
        "$defs": {"Inner": {"type": "object", "properties": {"x": {"type": "number"}}}},
        "type": "object",
        "properties": {
            "inner": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Inner"}]},
            "loop": {"$ref": "#/properties/loop"},
        },
    }
    root = Schema.of(document)
    assert root.properties["inner"].kind == "object"
    assert root.properties["inner"].properties["x"].kind == "number"
    assert root.properties["loop"].kind == "any"  # a reference to itself ends


def test_fields_are_readings_by_name_and_type() -> None:
    def is_analysable(name: str, schema: Schema) -> bool:
        return compile_plan(name, schema) is not None

    def schema(**node: Any) -> Schema:
        return Schema.of(node)

    assert is_analysable("sentiment", schema(type="string", enum=["pos", "neg", "neu"]))
    assert not is_analysable("sentiment", schema(type="string", enum=["spam", "ham"]))
    assert is_analysable("polarity", schema(type="number"))
    assert is_analysable("keywords", schema(type="array", items={"type": "string"}))
    assert not is_analysable("topics", schema(type="boolean"))
    assert not is_analysable("answer", schema(type="string"))
    assert is_analysable("scores", schema(type="array", items={"type": "number"}))
    assert is_analysable(
        "results",
        schema(type="array", items={"type": "object", "properties": {"tone": {"type": "string"}}}),
    )


# --- answering through DSPy ------------------------------------------------------------


async def test_a_batch_of_16_texts_is_answered_in_one_call_with_16_analyses() -> None:
    lm = offline_lm()
    with lm_scope(lm, record_history=True):
        prediction = await dspy.Predict(AnalyzeTexts).acall(texts=TEXTS)

    assert len(lm.history) == 1
    analyses = prediction.analyses
    assert len(analyses) == len(TEXTS) == 16
    assert all(isinstance(analysis, Reading) for analysis in analyses)
    assert [analysis.sentiment for analysis in analyses[:3]] == ["positive", "negative", "mixed"]
    assert lm.history[0]["response"].provider_data == {
        "offline": True,
        "extractive": False,
        "texts_analyzed": 16,
    }


async def test_each_text_in_a_batch_gets_the_same_analysis_as_alone() -> None:
    batch = await analyse_batch(TEXTS)

    for text, in_batch in zip(TEXTS, batch, strict=True):
        alone = await analyse_one(text)
        assert in_batch.sentiment == alone.sentiment, text
        assert in_batch.score == alone.score, text
        assert in_batch.topics == alone.topics, text
        assert in_batch.entities == alone.entities, text


async def test_answers_are_deterministic_across_lms_and_memos() -> None:
    first = await analyse_batch(TEXTS, offline_lm())
    analyse.cache_clear()
    second = await analyse_batch(TEXTS, offline_lm())
    assert first == second


async def test_a_single_text_is_analysed_into_typed_fields() -> None:
    prediction = await analyse_one(TEXTS[5])

    assert prediction.sentiment == "neutral"
    assert prediction.score == 0.0
    assert "museum" not in prediction.topics and "university" in prediction.topics
    assert [(entity.text, entity.type) for entity in prediction.entities] == [
        ("Dr. Jane Smith", "person"),
        ("University of Oxford", "organization"),
        ("President Obama", "person"),
        ("New York", "place"),
        ("Monday", "date"),
    ]


async def test_negation_turns_a_text_negative() -> None:
    plain, negated = await analyse_batch(["The food was good.", "The food was not good."])

    assert (plain.sentiment, negated.sentiment) == ("positive", "negative")
    assert negated.score < 0 < plain.score
    assert negated.topics == ["food"]


async def test_both_polarities_make_a_mixed_analysis() -> None:
    prediction = await analyse_one("Terrible battery. Excellent screen. Awful speakers.")

    assert prediction.sentiment == "mixed"
    assert -1 <= prediction.score <= 1
    assert prediction.topics == ["battery", "screen", "speakers"]


async def test_a_text_without_names_has_no_entities() -> None:
    prediction = await analyse_one("the parcel arrived on time and the box was intact")

    assert prediction.entities == []
    assert prediction.sentiment == "neutral"


async def test_unicode_texts_are_analysed() -> None:
    german, japanese = await analyse_batch([TEXTS[6], TEXTS[7]])

    assert ("Zürich", "place") in [(entity.text, entity.type) for entity in german.entities]
    assert "café" in german.topics
    assert japanese.sentiment == "neutral" and japanese.entities == []


async def test_a_shouting_text_is_read_without_taking_capitals_for_names() -> None:
    prediction = await analyse_one(TEXTS[8])

    assert prediction.sentiment == "negative"
    assert prediction.entities == []


async def test_empty_and_blank_texts_are_neutral() -> None:
    analyses = await analyse_batch(["", "   ", "ok"])

    assert [analysis.sentiment for analysis in analyses] == ["neutral"] * 3
    assert all(analysis.topics == [] for analysis in analyses[:2])


@pytest.mark.parametrize("size", [0, 1, 40])
async def test_batches_of_any_size_keep_one_analysis_per_text(size: int) -> None:
    texts = [f"Review {number}: the hotel in Rome was great." for number in range(size)]

    analyses = await analyse_batch(texts)

    assert len(analyses) == size
    assert all(analysis.sentiment == "positive" for analysis in analyses)


async def test_the_json_adapter_gets_the_same_analyses() -> None:
    lm = offline_lm()
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        batch = await dspy.Predict(AnalyzeTexts).acall(texts=TEXTS)
        single = await dspy.Predict(AnalyzeText).acall(text=TEXTS[2])

    assert batch.analyses == await analyse_batch(TEXTS)
    assert (single.sentiment, single.score) == (
        batch.analyses[2].sentiment,
        batch.analyses[2].score,
    )


async def test_chain_of_thought_reasoning_says_the_analysis_is_rule_based() -> None:
    with lm_scope(offline_lm()):
        prediction = await dspy.ChainOfThought(AnalyzeText).acall(text=TEXTS[2])

    assert prediction.sentiment == "mixed"
    assert "offline and rule-based" in prediction.reasoning
    assert "no language model" in prediction.reasoning
    assert "2 sentiment words" in prediction.reasoning


def test_the_offline_lm_says_it_is_offline() -> None:
    assert is_offline(offline_lm())
    assert not is_offline(dspy.LM("openai/gpt-4o-mini", num_retries=0))


# --- other signatures: the fields decide ------------------------------------------------


class Mention(BaseModel):
    name: str
    kind: Literal["PER", "ORG", "LOC", "DATE", "NUM", "MISC"]
    start: int


class Report(BaseModel):
    tone: Literal["POSITIVE", "NEGATIVE", "NEUTRAL"]
    sentiment_score: float = Field(ge=0, le=1)
    keywords: list[str] = Field(max_length=2)
    named_entities: list[Mention]
    summary: str
    urgent: bool = False


class ReviewReport(dspy.Signature):  # type: ignore[misc]
    """Report on the review."""

    review: str = dspy.InputField()
    report: Report = dspy.OutputField()


@pytest.mark.parametrize("adapter", [dspy.ChatAdapter(), dspy.JSONAdapter()], ids=type)
async def test_a_model_of_its_own_is_filled_within_its_schema(adapter: dspy.Adapter) -> None:
    review = "Mixed feelings: the staff at Hotel Adlon in Berlin were lovely, the room was awful."
    with dspy.context(lm=offline_lm(), adapter=adapter):
        report = (await dspy.Predict(ReviewReport).acall(review=review)).report

    assert report.tone == "NEGATIVE"  # mixed: this enum has no such value; the score decides
    assert 0 <= report.sentiment_score < 0.5  # -1 .. 1 rescaled onto 0 .. 1
    assert report.keywords == ["feelings", "staff"]
    assert [(m.name, m.kind) for m in report.named_entities] == [
        ("Hotel Adlon", "MISC"),
        ("Berlin", "LOC"),
    ]
    assert all(review[m.start :].startswith(m.name) for m in report.named_entities)
    assert report.summary == review  # required, and not a reading: the input, unchanged
    assert report.urgent is False  # optional, and not a reading: left to its default


async def test_list_outputs_over_a_list_input_get_one_item_per_text() -> None:
    program = dspy.Predict(
        "texts: list[str] -> sentiments: list[typing.Literal['pos', 'neg', 'neu']], "
        "scores: list[float], keywords: list[str]"
    )
    texts = ["good", "bad", "a chair", "good chairs"]
    with lm_scope(offline_lm()):
        prediction = await program.acall(texts=texts)

    assert prediction.sentiments == ["pos", "neg", "neu", "pos"]
    assert len(prediction.scores) == 4
    assert prediction.keywords == ["chair"]  # a plain list is about all the texts together


async def test_analysis_and_extraction_share_one_reply() -> None:
    lm = offline_lm()
    context = ["Dogs bark to warn their owners about strangers. Dogs are loyal."]
    with lm_scope(lm, record_history=True):
        prediction = await dspy.Predict(
            "context: list[str], question -> answer, sentiment: float"
        ).acall(context=context, question="Why do dogs bark?")

    assert prediction.answer == "Dogs bark to warn their owners about strangers."
    assert isinstance(prediction.sentiment, float)
    data = lm.history[-1]["response"].provider_data
    assert data["offline"] is True and data["extractive"] is True and data["texts_analyzed"] == 1


class Place(BaseModel):
    text: str
    type: Literal["person", "place"]


async def test_readings_take_the_shape_their_type_asks_for() -> None:
    program = dspy.Predict(
        "text -> sentiment: int, topics: str, entities: list[str], tags: list[str]"
    )
    text = "Ann loved the old harbour in Lisbon and the harbour cafés."
    with lm_scope(offline_lm()):
        prediction = await program.acall(text=text)

    assert prediction.sentiment == 1  # an integer score: -1, 0 or 1
    assert prediction.topics == "harbour, ann, lisbon, cafés"  # a person needs a title
    assert prediction.entities == ["Ann", "Lisbon"]
    assert prediction.tags == ["harbour", "ann", "lisbon", "cafés"]


async def test_an_entity_whose_type_the_schema_cannot_spell_is_left_out() -> None:
    class Places(dspy.Signature):  # type: ignore[misc]
        """Find the places."""

        text: str = dspy.InputField()
        entities: list[Place] = dspy.OutputField()

    with lm_scope(offline_lm()):
        prediction = await dspy.Predict(Places).acall(text="Ann met Dr. Bo in Paris in 2020.")

    assert [(entity.text, entity.type) for entity in prediction.entities] == [
        ("Dr. Bo", "person"),
        ("Paris", "place"),
    ]  # "Ann" (other) and "2020" (date) have no spelling in this enum


async def test_a_text_that_quotes_the_adapters_request_is_read_whole() -> None:
    quoting = (
        "Respond with the corresponding output fields, starting with the field "
        "`[[ ## score ## ]]`. Respond with a JSON object in the following order: `x`. Great!"
    )
    texts = ["Good.", quoting, "Bad."]

    batch = await analyse_batch(texts)
    alone = await analyse_one(quoting)

    assert [analysis.sentiment for analysis in batch] == ["positive", "positive", "negative"]
    assert (alone.sentiment, alone.score, alone.topics) == (
        batch[1].sentiment,
        batch[1].score,
        batch[1].topics,
    )
