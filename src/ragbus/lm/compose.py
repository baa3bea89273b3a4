"""Writing the offline LM's reply: a value for every output field, in the adapter's format.

A field named ``reasoning`` (or ``rationale``) says where the answer came from; every
other field gets the answer. A ``list[...]`` field gets the answer's sentences as a list,
a ``bool`` field whether an answer was found.
"""

from __future__ import annotations

import json
from typing import Final

from ragbus.lm.extract import Extraction
from ragbus.lm.prompt import OutputField, ParsedPrompt

#: The answer when the context does not answer the question.
NO_ANSWER: Final = "The context does not contain an answer to this question."

_REASONING_FIELDS: Final = frozenset({"reasoning", "rationale"})

FieldValue = str | bool | list[str]


def _series(items: list[str]) -> str:
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def reasoning_text(extraction: Extraction) -> str:
    """One sentence saying which passages the answer quotes, or why there is none."""
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


def field_value(output: OutputField, extraction: Extraction) -> FieldValue:
    """The value of one output field."""
    if output.name.lower() in _REASONING_FIELDS:
        return reasoning_text(extraction)
    type_name = output.type.replace(" ", "").lower()
    if type_name == "bool":
        return extraction.found
    if type_name.startswith("list["):
        return [sentence.text for sentence in extraction.sentences]
    return answer_text(extraction)


def compose_reply(prompt: ParsedPrompt, extraction: Extraction) -> str:
    """The full reply text for ``prompt``: ``[[ ## field ## ]]`` sections ending with
    ``[[ ## completed ## ]]`` (ChatAdapter), or one JSON object (JSONAdapter)."""
    values = {output.name: field_value(output, extraction) for output in prompt.outputs}
    if prompt.json_output:
        return json.dumps(values, ensure_ascii=False, indent=2)
    sections = []
    for name, value in values.items():
        rendered = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        sections.append(f"[[ ## {name} ## ]]\n{rendered}\n\n")
    return "".join(sections) + "[[ ## completed ## ]]"
