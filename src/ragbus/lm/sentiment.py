"""Lexicon sentiment: a text's polarity from its sentiment words, with negation, intensifiers
and contrast.

Each sentiment word (:mod:`ragbus.lm.lexicon`) adds its valence. Within its clause, a
negator up to three words before reverses it (``not good``, ``never happy``); an
intensifier or a dampener right before it (or two words before) scales it (``very
good``, ``slightly slow``). In a sentence with ``but``/``however``, what comes before
weighs half and what comes after one and a half times (the turn carries the point). Up to
three ``!`` add emphasis. The sum is normalised into -1 .. 1 as ``s / sqrt(s² + 15)``
(VADER's normalisation).

The label is ``mixed`` when both polarities are strong (each side's raw strength at least
:data:`MIXED_MINIMUM`, and the weaker at least :data:`MIXED_BALANCE` of the stronger),
else ``positive`` / ``negative`` beyond ±:data:`NEUTRAL_BAND`, else ``neutral``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from ragbus.lm.lexicon import NEGATION_SCALE, word_info
from ragbus.lm.tokens import Token

#: Each side's raw strength must reach this for a text to be ``mixed``.
MIXED_MINIMUM: Final = 1.5
#: The weaker side's share of the stronger at which a text is ``mixed``.
MIXED_BALANCE: Final = 0.4
#: Scores within this distance of 0 are ``neutral``.
NEUTRAL_BAND: Final = 0.05

_NEGATION_REACH: Final = 3
_MODIFIER_REACH: Final = 2
_BEFORE_TURN: Final = 0.5
_AFTER_TURN: Final = 1.5
_EXCLAMATION: Final = 0.292
_MAX_EXCLAMATIONS: Final = 3
_NORMALISER: Final = 15.0

SentimentLabel = Literal["positive", "negative", "neutral", "mixed"]


@dataclass(frozen=True, slots=True)
class Sentiment:
    """The sentiment of a text.

    Parameters:
        label: ``positive``, ``negative``, ``neutral`` or ``mixed``.
        score: -1 (most negative) .. 1 (most positive), rounded to 3 decimals.
        positive: raw strength of its positive cues (after negation and intensifiers).
        negative: raw strength of its negative cues, as a positive number.
        cues: how many sentiment words it has.
    """

    label: SentimentLabel
    score: float
    positive: float
    negative: float
    cues: int


def _cue_valence(tokens: Sequence[Token], index: int, valence: float) -> float:
    """``valence`` of the word at ``index``, scaled by the modifiers and negators before it
    in its clause."""
    scale = 1.0
    negated = False
    for back in range(1, _NEGATION_REACH + 1):
        position = index - back
        if position < 0 or tokens[position + 1].clause_start:
            break
        info = word_info(tokens[position].lower)
        if info.contrast:
            break
        if info.negator:
            negated = True
        elif info.modifier and back <= _MODIFIER_REACH:
            scale *= 1 + info.modifier * (1.0 if back == 1 else 0.95)
    return valence * scale * (NEGATION_SCALE if negated else 1.0)


def _turn_weights(tokens: Sequence[Token]) -> list[float]:
    """Each token's weight: less before a ``but`` in its sentence, more after it."""
    weights = [1.0] * len(tokens)
    sentence_begin = 0
    for index in range(len(tokens) + 1):
        if index == len(tokens) or (index and tokens[index].sentence_start):
            for turn in range(sentence_begin, index):
                if word_info(tokens[turn].lower).contrast:
                    for before in range(sentence_begin, turn):
                        weights[before] = _BEFORE_TURN
                    for after in range(turn + 1, index):
                        weights[after] = _AFTER_TURN
                    break
            sentence_begin = index
    return weights


def sentiment(tokens: Sequence[Token], text: str) -> Sentiment:
    """The sentiment of ``text``.

    Parameters:
        tokens: the words of ``text`` (:func:`ragbus.lm.tokens.tokenize`).
        text: the text itself (for its exclamation marks).
    """
    positive = negative = total = 0.0
    cues = 0
    weights: list[float] | None = None
    for index, token in enumerate(tokens):
        valence = word_info(token.lower).valence
        if not valence:
            continue
        if weights is None:
            weights = _turn_weights(tokens)
        cues += 1
        value = _cue_valence(tokens, index, valence)
        if value > 0:
            positive += value
        else:
            negative -= value
        total += value * weights[index]
    if total:
        emphasis = min(text.count("!"), _MAX_EXCLAMATIONS) * _EXCLAMATION
        total += math.copysign(emphasis, total)
    score = max(-1.0, min(1.0, round(total / math.sqrt(total * total + _NORMALISER), 3)))
    weaker, stronger = sorted((positive, negative))
    label: SentimentLabel
    if weaker >= MIXED_MINIMUM and weaker >= MIXED_BALANCE * stronger:
        label = "mixed"
    elif score >= NEUTRAL_BAND:
        label = "positive"
    elif score <= -NEUTRAL_BAND:
        label = "negative"
    else:
        label = "neutral"
    return Sentiment(
        label=label,
        score=score + 0.0,  # never -0.0
        positive=round(positive, 3),
        negative=round(negative, 3),
        cues=cues,
    )
