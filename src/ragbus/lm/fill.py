"""Choosing the offline LM's value for each output field, from the field's name and type.

Two readers answer, and each field decides which:

- the text analysis (:func:`ragbus.lm.analysis.analyse`) answers the fields that ask for
  a reading of the input (sentiment, score, topics, entities, or objects and lists of
  them; :mod:`ragbus.lm.plan` says which and how). A list of readings gets one item per
  item of the first ``list[...]`` input, in order (``texts: list[str] -> analyses:
  list[TextAnalysis]``), or one item when there is no list input; any other reading is
  about all the input's text together;
- the extractive reader (:func:`ragbus.lm.extract.extract`) answers every other field:
  the question's best context sentences, a ``bool`` for whether there are any, a list
  of them.

A ``reasoning``/``rationale`` field says how the others were answered: by rules when any
field is a reading, else which passages the answer quotes.
"""

from __future__ import annotations

from typing import Any, Final

from ragbus.lm.analysis import Analysis, analyse
from ragbus.lm.compose import analysis_reasoning, answer_text, reasoning_text
from ragbus.lm.extract import Extraction, extract, summarize
from ragbus.lm.plan import Analyser, compile_plan
from ragbus.lm.prompt import OutputField, ParsedPrompt

_REASONING_FIELDS: Final = frozenset({"reasoning", "rationale"})


def _asks(text: str) -> bool:
    """Whether ``text`` reads as a question rather than a text to read."""
    return text.rstrip().endswith("?")


class FieldFiller:
    """The value of each output field of one prompt.

    The extraction and each text's analysis are computed on first use, once: a RAG prompt
    never analyses, an analysis prompt never extracts.

    Parameters:
        prompt: the parsed prompt.
        analyser: the text analysis (default :func:`ragbus.lm.analysis.analyse`).
    """

    def __init__(self, prompt: ParsedPrompt, analyser: Analyser = analyse) -> None:
        self.prompt = prompt
        self._analyser = analyser
        self._extraction: Extraction | None = None
        self._analyses: dict[str, Analysis] = {}
        self._texts: tuple[str, list[str] | None] | None = None

    @property
    def extraction(self) -> Extraction | None:
        """The extraction, if a field needed one."""
        return self._extraction

    @property
    def analyses(self) -> list[Analysis]:
        """The analyses the fields needed, one per distinct text, in order."""
        return list(self._analyses.values())

    def values(self) -> dict[str, Any]:
        """Every output field's value, in the order the prompt asks for them."""
        outputs = self.prompt.outputs
        # Reasoning last: it says how the other fields were answered.
        answers = {
            output.name: self._value(output)
            for output in outputs
            if output.name.lower() not in _REASONING_FIELDS
        }
        for output in outputs:
            if output.name.lower() in _REASONING_FIELDS:
                if self._analyses:
                    answers[output.name] = analysis_reasoning(self.analyses)
                else:
                    answers[output.name] = reasoning_text(self._extract())
        return {output.name: answers[output.name] for output in outputs}

    def _extract(self) -> Extraction:
        if self._extraction is None:
            question, passages = self.prompt.question(), self.prompt.passages()
            if not passages and not _asks(question):
                # A text with nothing to search and no question: say what it says.
                self._extraction = summarize(question)
            else:
                self._extraction = extract(question, passages)
        return self._extraction

    def _analyse(self, text: str) -> Analysis:
        analysis = self._analyses.get(text)
        if analysis is None:
            analysis = self._analyses[text] = self._analyser(text)
        return analysis

    def _subject_and_items(self) -> tuple[str, list[str] | None]:
        """All the input's text, and the items of its list input (``None`` without one)."""
        if self._texts is None:
            list_input = self.prompt.list_input()
            items = self.prompt.list_items(list_input) if list_input else None
            self._texts = (self.prompt.subject(), items)
        return self._texts

    def _value(self, output: OutputField) -> Any:
        plan = compile_plan(output.name, output.schema)
        if plan is not None:
            subject, items = self._subject_and_items()
            return plan.fill(self._analyse, subject, items)
        extraction = self._extract()
        kind = output.schema.kind
        if kind == "boolean":
            return extraction.found
        if kind == "array":
            return [sentence.text for sentence in extraction.sentences]
        return answer_text(extraction)
