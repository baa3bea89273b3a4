"""Writing the offline LM's reply: its texts (the answer, what the reasoning says) and the
reply itself, every output field in the adapter's format."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ragbus.lm.analysis import Analysis
from ragbus.lm.extract import Extraction

#: The answer when the context does not answer the question.
NO_ANSWER: Final = "The context does not contain an answer to this question."


def _series(items: list[str]) -> str:
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def reasoning_text(extraction: Extraction) -> str:
    """One sentence saying which passages the answer quotes, or why there is none."""
    if extraction.summary:
        if not extraction.found:
            return "This summary is extractive, and the text has no sentence to quote."
        quoted = _plural(len(extraction.sentences), "sentence")
        return (
            f"This summary is extractive: it quotes the {quoted} of the text that shares the "
            f"most of its frequent terms ({', '.join(extraction.matched_words)}); no text was "
            "generated."
        )
    if extraction.found:
        quoted_passages = extraction.passages
        refs = _series([f"[{index + 1}]" for index in quoted_passages])
        noun = "passage" if len(quoted_passages) == 1 else "passages"
        matched = ", ".join(extraction.matched_words)
        quoted = _plural(len(extraction.sentences), "sentence")
        verb = "shares" if len(extraction.sentences) == 1 else "share"
        return (
            f"This answer is extractive: it quotes {quoted} from context {noun} {refs} "
            f"that {verb} the most terms with the question ({matched}); no text was generated."
        )
    if extraction.passage_count == 0:
        return "This answer is extractive, and the context is empty, so there is nothing to quote."
    if not extraction.question_words:
        return (
            "This answer is extractive, and the question has no content words to look for "
            "in the context, so there is nothing to quote."
        )
    wanted = ", ".join(extraction.question_words)
    searched = _plural(extraction.passage_count, "context passage")
    return (
        f"This answer is extractive, and no sentence in the {searched} matches enough of "
        f"the question's terms ({wanted}), so there is nothing to quote."
    )


def answer_text(extraction: Extraction) -> str:
    """The chosen sentences, best first, or :data:`NO_ANSWER`."""
    if not extraction.found:
        return NO_ANSWER
    return " ".join(sentence.text for sentence in extraction.sentences)


def analysis_reasoning(analyses: Sequence[Analysis]) -> str:
    """One paragraph saying how ``analyses`` were made: offline, by rules, no model.

    Parameters:
        analyses: the analyses the reply reports (one per distinct text).
    """
    texts = "the text" if len(analyses) == 1 else "the texts"
    cues = sum(analysis.sentiment.cues for analysis in analyses)
    return (
        f"This analysis is offline and rule-based: no language model read {texts}. "
        "The sentiment comes from a built-in word lexicon with negation and intensifiers "
        f"({_plural(cues, 'sentiment word')} found); the topics are the most frequent "
        "content words; the entities are capitalised spans, dates and numbers, typed by "
        "simple cues (titles, company suffixes, a short list of places)."
    )


def render_reply(values: Mapping[str, Any], json_output: bool) -> str:
    """The reply text: ``[[ ## field ## ]]`` sections ending with ``[[ ## completed ## ]]``
    (ChatAdapter), or one JSON object (JSONAdapter).

    Parameters:
        values: each output field's value, in order (JSON-ready).
        json_output: whether the adapter asked for one JSON object.
    """
    if json_output:
        return json.dumps(values, ensure_ascii=False, indent=2)
    sections = []
    for name, value in values.items():
        rendered = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        sections.append(f"[[ ## {name} ## ]]\n{rendered}\n\n")
    return "".join(sections) + "[[ ## completed ## ]]"
