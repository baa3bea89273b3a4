"""The offline LM's rule-based text analysis: lexicon, sentiment, topics and entities."""

from __future__ import annotations

import pytest

from ragbus.lm.analysis import analyse
from ragbus.lm.entities import ENTITIES_PER_TEXT, entities
from ragbus.lm.lexicon import VALENCES, word_info
from ragbus.lm.sentiment import sentiment
from ragbus.lm.tokens import tokenize
from ragbus.lm.topics import TOPICS_PER_TEXT, topics


def feeling(text: str) -> tuple[str, float]:
    result = sentiment(tokenize(text), text)
    return result.label, result.score


def found(text: str) -> list[tuple[str, str]]:
    return [(entity.text, entity.type) for entity in entities(text, tokenize(text))]


def topics_of(text: str) -> tuple[str, ...]:
    return topics(tokenize(text))


# --- lexicon ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "sign"),
    [
        ("disappoints", -1),
        ("crashing", -1),
        ("enjoying", 1),
        ("improvements", 1),
        ("failures", -1),
        ("happiness", 1),
    ],
)
def test_lexicon_knows_inflections_by_their_stem(word: str, sign: int) -> None:
    assert word not in VALENCES
    assert word_info(word).valence * sign > 0


@pytest.mark.parametrize(
    "word",
    [
        "several",  # severe
        "goods",  # good
        "excel",  # excellent
        "wonder",  # wonderful
        "aws",  # awful
        "exception",  # exceptional
        "friends",  # friendly
        "help",  # helpful
        "please",  # pleased
        "remarks",  # remarkable
        "impression",  # impressive
        "crowd",  # crowded
        "expenses",  # expensive
        "miss",  # missing
        "terribly",  # terrible: an intensifier, not a sentiment word
    ],
)
def test_neutral_words_that_share_a_stem_with_a_sentiment_word_carry_none(word: str) -> None:
    assert word_info(word).valence == 0


def test_lexicon_marks_negators_modifiers_and_contractions() -> None:
    assert word_info("not").negator and word_info("never").negator
    assert word_info("isn't").negator and word_info("don't").negator
    assert word_info("very").modifier > 0 > word_info("slightly").modifier
    assert word_info("but").contrast


# --- sentiment -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("I love this phone.", "positive"),
        ("The delivery was fast and the staff were friendly.", "positive"),
        ("This is the worst service I have ever had.", "negative"),
        ("The update broke everything and support was useless.", "negative"),
        ("The meeting starts at noon in room four.", "neutral"),
        ("", "neutral"),
    ],
)
def test_sentiment_labels_plain_texts(text: str, label: str) -> None:
    assert feeling(text)[0] == label


def test_negation_reverses_what_follows_it() -> None:
    assert feeling("The food was good.")[0] == "positive"
    assert feeling("The food was not good.")[0] == "negative"
    assert feeling("The food wasn't good.")[0] == "negative"
    assert feeling("It is not bad at all.")[0] == "positive"
    assert feeling("I have never been happy with it.")[0] == "negative"
    assert feeling("It works without problems.")[0] == "positive"


def test_negation_keeps_a_negated_word_weaker_than_its_plain_opposite() -> None:
    assert feeling("not good")[1] > feeling("bad")[1]


def test_negation_stops_at_a_clause_boundary() -> None:
    assert feeling("Not now, the film is good.")[0] == "positive"
    assert feeling("No. It is good.")[0] == "positive"


def test_negation_reaches_three_words_back_only() -> None:
    assert feeling("not a very good film")[0] == "negative"
    assert feeling("not that I would say this movie is good")[0] == "positive"


def test_intensifiers_strengthen_and_dampeners_soften() -> None:
    plain = feeling("The room was good.")[1]
    assert feeling("The room was very good.")[1] > plain
    assert feeling("The room was extremely good.")[1] > feeling("The room was very good.")[1]
    assert 0 < feeling("The room was slightly good.")[1] < plain
    assert feeling("very bad")[1] < feeling("bad")[1] < 0


def test_exclamation_marks_add_emphasis_up_to_three() -> None:
    assert feeling("good!")[1] > feeling("good")[1]
    assert feeling("good!!!")[1] == feeling("good!!!!!!")[1]
    assert feeling("bad!")[1] < feeling("bad")[1]
    assert feeling("Hello!")[1] == 0


def test_both_strong_polarities_make_a_mixed_text() -> None:
    label, score = feeling("The food was great but the service was terrible.")
    assert label == "mixed"
    assert score < 0  # what follows "but" weighs more


def test_contrast_gives_the_turn_more_weight() -> None:
    assert feeling("The screen is awful but the battery is wonderful.")[1] > 0
    assert feeling("The battery is wonderful but the screen is awful.")[1] < 0


def test_a_weak_opposite_does_not_make_a_text_mixed() -> None:
    assert feeling("A great phone, only slightly slow.")[0] == "positive"
    assert feeling("Terrible, awful, useless, though the box was nice.")[0] == "negative"


def test_score_stays_within_minus_one_and_one() -> None:
    assert -1 <= feeling("excellent " * 200 + "!!!")[1] <= 1
    assert feeling("excellent " * 200)[1] > 0.99
    assert -1 <= feeling("terrible " * 200)[1] < -0.99


def test_sentiment_counts_its_cues() -> None:
    result = sentiment(tokenize("Great camera, bad battery, neutral case."), "")
    assert result.cues == 2
    assert result.positive == 3.0 and result.negative == 2.5


# --- topics ----------------------------------------------------------------------------


def test_topics_are_the_most_frequent_content_words_counted_by_stem() -> None:
    text = "The battery died. Batteries should last. The screen is fine, the battery not."
    assert topics_of(text)[:2] == ("battery", "screen")


def test_topics_leave_out_stopwords_sentiment_and_generic_words() -> None:
    assert topics_of("I really love it and it is great, honestly, it is.") == ()


def test_topics_are_lower_case_and_keep_first_mention_order_on_ties() -> None:
    assert topics_of("Kubernetes schedules Containers on Nodes") == (
        "kubernetes",
        "schedules",
        "containers",
        "nodes",
    )


def test_past_tense_words_yield_to_other_topics_of_equal_count() -> None:
    assert topics_of("The company reported revenue growth") == (
        "company",
        "revenue",
        "growth",
        "reported",
    )


def test_topics_are_limited() -> None:
    text = " ".join(f"word{number}" for number in range(12))
    many = " ".join(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"] * 2)
    assert len(topics_of(many + " india juliet kilo")) == TOPICS_PER_TEXT
    assert topics_of(text) == ()  # words with digits are no topics


def test_topics_read_any_script() -> None:
    assert topics_of("Zürich café, Zürich smörgåsbord") == ("zürich", "café", "smörgåsbord")


def test_topics_leave_names_dates_and_numbers_to_the_entities() -> None:
    assert analyse("Dr. Jane Smith visited the museum on March 3, 2024.").topics == (
        "museum",
        "visited",
    )


# --- entities --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("Investors bought Acme Corp shares.", ("Acme Corp", "organization")),
        ("We bought it from Globex Inc. last year.", ("Globex Inc", "organization")),
        ("She studied at the University of Oxford.", ("University of Oxford", "organization")),
        ("I met Dr. Jane Smith there.", ("Dr. Jane Smith", "person")),
        ("Ask Mr Brown.", ("Mr Brown", "person")),
        ("We ate at Burger King.", ("Burger King", "other")),
        ("We saw Queen Elizabeth.", ("Queen Elizabeth", "person")),
        ("We flew to Paris.", ("Paris", "place")),
        ("We flew to New York yesterday.", ("New York", "place")),
        ("We swam in the Mississippi River.", ("Mississippi River", "place")),
        ("It shipped on March 3, 2024.", ("March 3, 2024", "date")),
        ("It shipped on 3 March 2024.", ("3 March 2024", "date")),
        ("Due 2024-03-05.", ("2024-03-05", "date")),
        ("See you on Monday.", ("Monday", "date")),
        ("It was founded in 1999.", ("1999", "date")),
        ("Prices rose in April.", ("April", "date")),
        ("It costs $1,200 now.", ("$1,200", "number")),
        ("Up 12% on the week.", ("12%", "number")),
        ("They raised 3.5 million this week.", ("3.5 million", "number")),
        ("I talked to Jane Smith.", ("Jane Smith", "other")),
        ("He works at AT&T now.", ("AT&T", "other")),
    ],
)
def test_entities_are_found_and_typed_by_cues(text: str, entity: tuple[str, str]) -> None:
    assert entity in found(text)


def test_a_sentence_opening_common_word_is_no_entity() -> None:
    assert found("The weather is nice. However, it rained. Overall, fine.") == []
    assert found("Great stuff. Yesterday it rained.") == []


def test_a_sentence_opening_word_the_text_also_writes_in_lower_case_is_no_entity() -> None:
    assert found("Battery life is poor: the battery dies by noon.") == []


def test_a_sentence_opening_name_is_an_entity() -> None:
    assert found("Microsoft released Windows today.") == [
        ("Microsoft", "other"),
        ("Windows", "other"),
    ]
    assert found("The Guardian reported it.") == [("Guardian", "other")]


def test_a_text_without_names_dates_or_numbers_has_no_entities() -> None:
    assert found("the cat sat on the mat and I think I'm right") == []


def test_capitals_in_a_shouting_text_name_nothing() -> None:
    assert found("THIS IS THE WORST PRODUCT I HAVE EVER BOUGHT") == []


def test_entities_read_any_script() -> None:
    assert found("Café Müller opened in Zürich. 東京 is far. 😀") == [
        ("Café Müller", "other"),
        ("Zürich", "place"),
    ]


def test_entities_keep_their_offsets_possessives_aside() -> None:
    text = "Apple's chief met Dr. Lee in Paris on Friday, paying $300."
    spans = entities(text, tokenize(text))
    assert [entity.text for entity in spans] == ["Apple", "Dr. Lee", "Paris", "Friday", "$300"]
    assert all(text[entity.start : entity.end] == entity.text for entity in spans)


def test_each_entity_is_reported_once_and_their_number_is_limited() -> None:
    assert found("Paris is big. We love Paris.") == [("Paris", "place")]
    text = " ".join(f"{number}," for number in range(ENTITIES_PER_TEXT + 20))
    assert len(found(text)) == ENTITIES_PER_TEXT


def test_names_do_not_run_across_lines_or_sentences() -> None:
    assert found("We met Anna\nBerlin was cold.") == [("Anna", "other"), ("Berlin", "place")]


# --- the whole analysis ----------------------------------------------------------------


def test_analysis_is_a_pure_function_of_the_stripped_text() -> None:
    text = "I love Paris in April, but the hotel was awful."
    first = analyse(text)
    analyse.cache_clear()
    assert analyse(text) == first
    assert analyse(f"  {text}\n") == first
    assert analyse(text) is analyse(text)  # memoized


def test_a_sentence_opening_participle_or_adjective_is_no_entity() -> None:
    assert found("Mixed feelings about it. Shipping was slow. Ted called.") == [("Ted", "other")]
    assert found("Beijing was cold.") == [("Beijing", "place")]
