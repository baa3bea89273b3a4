"""Rule-based entities: dates, numbers and capitalised spans, typed by simple cues.

Found in this order, each on the text the earlier ones left:

- dates: ISO (``2024-03-05``) and numeric (``05/03/2024``) dates, a month name with a day
  and/or a year (``March 3, 2024``, ``3 March``, ``March 2024``), a weekday, a month name
  alone inside a sentence, and a year (1000-2099) after a cue such as ``in`` or ``since``;
- numbers: integers and decimals with thousands separators, an optional currency sign and
  an optional ``%`` or ``million``/``billion``/...;
- capitalised spans: runs of capitalised words (``New York``, ``Bank of England``,
  ``Dr Jane Smith``, ``AT&T``) joined by ``of``/``de``/``van``/... or ``&``. A sentence's
  first word opens a span only when it is not a common word (``The``, ``Overall``,
  ``Great``, adverbs in ``-ly``, participles such as ``Mixed``) and the text never
  writes it in lower case. A text written mostly in capitals has no such spans.

A span is a ``person`` after a title (Mr, Dr, President, ...), an ``organization`` with
a company suffix or word (Inc, Ltd, Bank, University, ...), a ``place`` when it is in a
short list of countries, regions and large cities or has a place word (River, Street,
City, ...), otherwise ``other``. These are cues, not knowledge: ``Jane Smith`` alone is
``other``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from ragbus.lm.lexicon import word_info
from ragbus.lm.tokens import Token

#: Most entities reported for one text.
ENTITIES_PER_TEXT: Final = 50

EntityType = Literal["person", "organization", "place", "date", "number", "other"]

_MONTH_NAMES: Final = (
    "January|February|March|April|May|June|July|August|September|October|November|December"
)
_MONTH_ABBREVIATIONS: Final = r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec"
_MONTH: Final = rf"(?:{_MONTH_NAMES}|(?:{_MONTH_ABBREVIATIONS})\.?)"
_DAY: Final = r"\d{1,2}(?:st|nd|rd|th)?"
_YEAR: Final = r"(?:1\d{3}|20\d{2})"
_DATE: Final = re.compile(
    "|".join(
        [
            r"\b\d{4}-\d{2}-\d{2}\b",
            r"\b\d{1,2}[/.]\d{1,2}[/.](?:\d{4}|\d{2})\b",
            rf"\b{_MONTH}\s+{_DAY}(?:,?\s+{_YEAR})?\b",
            rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+{_YEAR})?\b",
            rf"\b{_MONTH},?\s+{_YEAR}\b",
            r"\b(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b",
        ]
    )
)
# Without a digit, only a weekday can be a date (and nothing a number): one cheap scan.
_WEEKDAY: Final = re.compile(r"\b(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b")
_DIGIT: Final = re.compile(r"\d")
_CUED_YEAR: Final = re.compile(
    rf"\b(?:[Ii]n|[Ss]ince|[Bb]y|[Uu]ntil|[Tt]ill|[Ff]rom|[Dd]uring|[Bb]efore|[Aa]fter"
    rf"|[Oo]f|[Ee]arly|[Ll]ate|[Mm]id|[Aa]round|[Cc]irca|[Yy]ear)[\s-]+({_YEAR})\b(?![.,]\d)"
)
_NUMBER: Final = re.compile(
    r"(?<![\w.,-])[$€£¥]?\d{1,3}(?:,\d{3})+(?:\.\d+)?"
    r"(?:\s?%|\s(?:percent|thousand|million|billion|trillion)\b)?(?![\w])"
    r"|(?<![\w.,-])[$€£¥]?\d+(?:\.\d+)?"
    r"(?:\s?%|\s(?:percent|thousand|million|billion|trillion)\b)?(?![\w]|[.,]\d)"
)
_MONTH_WORD: Final = re.compile(rf"{_MONTH_NAMES}")

_TITLES: Final = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "dr",
        "prof",
        "professor",
        "sir",
        "dame",
        "lord",
        "lady",
        "rev",
        "president",
        "senator",
        "governor",
        "mayor",
        "judge",
        "king",
        "queen",
        "prince",
        "princess",
        "pope",
    }
)
_ORGANIZATION_SUFFIXES: Final = frozenset(
    {
        "inc",
        "corp",
        "corporation",
        "ltd",
        "llc",
        "llp",
        "plc",
        "gmbh",
        "ag",
        "sa",
        "co",
        "company",
        "group",
        "holdings",
        "partners",
        "technologies",
        "labs",
        "systems",
        "airlines",
        "fc",
    }
)
_ORGANIZATION_WORDS: Final = frozenset(
    {
        "bank",
        "university",
        "college",
        "institute",
        "foundation",
        "association",
        "ministry",
        "agency",
        "department",
        "council",
        "committee",
        "commission",
        "party",
        "union",
        "society",
        "school",
        "hospital",
    }
)
_PLACE_WORDS: Final = frozenset(
    {
        "city",
        "river",
        "lake",
        "mount",
        "mountains",
        "island",
        "islands",
        "street",
        "avenue",
        "road",
        "square",
        "county",
        "province",
        "state",
        "republic",
        "kingdom",
        "bay",
        "valley",
        "coast",
        "desert",
        "ocean",
        "sea",
    }
)
#: Places known by name (casefolded): continents, countries, regions, large cities.
_PLACES: Final = frozenset(
    {
        "africa",
        "asia",
        "europe",
        "antarctica",
        "oceania",
        "america",
        "australia",
        "usa",
        "us",
        "uk",
        "eu",
        "england",
        "scotland",
        "wales",
        "ireland",
        "france",
        "germany",
        "spain",
        "italy",
        "portugal",
        "netherlands",
        "belgium",
        "switzerland",
        "austria",
        "sweden",
        "norway",
        "denmark",
        "finland",
        "iceland",
        "poland",
        "greece",
        "turkey",
        "russia",
        "ukraine",
        "china",
        "japan",
        "india",
        "korea",
        "canada",
        "mexico",
        "brazil",
        "argentina",
        "chile",
        "peru",
        "colombia",
        "egypt",
        "nigeria",
        "kenya",
        "ethiopia",
        "morocco",
        "israel",
        "iran",
        "iraq",
        "indonesia",
        "vietnam",
        "thailand",
        "pakistan",
        "bangladesh",
        "philippines",
        "singapore",
        "london",
        "paris",
        "berlin",
        "madrid",
        "rome",
        "milan",
        "amsterdam",
        "brussels",
        "vienna",
        "zurich",
        "zürich",
        "geneva",
        "stockholm",
        "oslo",
        "copenhagen",
        "helsinki",
        "dublin",
        "lisbon",
        "athens",
        "istanbul",
        "moscow",
        "kyiv",
        "warsaw",
        "prague",
        "budapest",
        "tokyo",
        "osaka",
        "beijing",
        "shanghai",
        "seoul",
        "delhi",
        "mumbai",
        "bangalore",
        "sydney",
        "melbourne",
        "toronto",
        "vancouver",
        "montreal",
        "chicago",
        "boston",
        "seattle",
        "washington",
        "texas",
        "california",
        "florida",
        "dubai",
        "cairo",
        "lagos",
        "nairobi",
        "munich",
        "hamburg",
        "barcelona",
        "north america",
        "south america",
        "latin america",
        "middle east",
        "united states",
        "united kingdom",
        "new zealand",
        "south africa",
        "south korea",
        "north korea",
        "saudi arabia",
        "hong kong",
        "new delhi",
        "new york",
        "los angeles",
        "san francisco",
        "mexico city",
        "são paulo",
        "sao paulo",
        "rio de janeiro",
        "buenos aires",
    }
)
# Endings of words that open sentences as adjectives, participles or adverbs, not names.
_WORD_SUFFIXES: Final = ("ed", "ing", "ly", "ful", "ous", "ive", "able", "ness", "ment")
# Lower-case words that may sit inside a name: "Bank of England", "Rio de Janeiro".
_CONNECTORS: Final = frozenset({"of", "de", "la", "du", "des", "da", "di", "del", "van", "von"})


@dataclass(frozen=True, slots=True)
class FoundEntity:
    """An entity of a text.

    Parameters:
        text: the entity as written.
        type: ``person``, ``organization``, ``place``, ``date``, ``number`` or ``other``.
        start: its offset in the text.
        end: the offset just after it.
    """

    text: str
    type: EntityType
    start: int
    end: int


def _is_capitalised(token: Token) -> bool:
    first = token.text[0]
    return first.isupper() and token.lower != "i" and not token.lower.startswith("i'")


def _is_acronym(token: Token) -> bool:
    return len(token.text) > 1 and token.text.isupper()


def _shouting(tokens: Sequence[Token], capitalised: Sequence[Token]) -> bool:
    """Whether most words are in capitals: then capitals say nothing about names."""
    acronyms = sum(1 for token in capitalised if _is_acronym(token))
    if acronyms < 2:
        return False
    words = sum(1 for token in tokens if len(token.text) > 1 and not token.text.isdigit())
    return words > 2 and acronyms * 2 > words


def _joinable(text: str, left: Token, right: Token) -> bool:
    """Whether ``left`` and ``right`` can belong to one name: spaces or ``&`` between them
    (no line break), or the full stop of a title or an initial (``Dr. Smith``,
    ``J. Smith``)."""
    gap = text[left.end : right.start]
    if "\n" in gap:
        return False
    if not gap.strip():
        return bool(gap)
    if gap.strip() == "&":
        return True
    abbreviated = left.lower in _TITLES or len(left.text) == 1
    return abbreviated and gap.startswith(".") and not gap[1:].strip()


def _continues(text: str, span: list[Token], token: Token) -> bool:
    """Whether capitalised ``token`` continues ``span``: adjacent, and no sentence ends
    between them (a title's or initial's full stop ends none)."""
    if not _joinable(text, span[-1], token):
        return False
    return not token.sentence_start or text[span[-1].end] == "."


def _spans(
    text: str, tokens: Sequence[Token], covered: Callable[[Token], bool]
) -> list[list[Token]]:
    """The runs of capitalised tokens (with the connectors inside them), in order, leaving
    out the ``covered`` tokens (dates and numbers)."""

    def capitalised(index: int) -> bool:
        token = tokens[index]
        return _is_capitalised(token) and not covered(token)

    spans: list[list[Token]] = []
    index = 0
    while index < len(tokens):
        if not capitalised(index):
            index += 1
            continue
        span = [tokens[index]]
        index += 1
        while index < len(tokens):
            token = tokens[index]
            if (
                token.lower in _TITLES
                and index + 1 < len(tokens)
                and capitalised(index + 1)
                and _continues(text, [token], tokens[index + 1])
            ):
                break  # a title before a name starts a person's name: "Ask Mr Brown"
            if capitalised(index) and _continues(text, span, token):
                span.append(token)
                index += 1
            elif (
                token.lower in _CONNECTORS
                and index + 1 < len(tokens)
                and capitalised(index + 1)
                and _joinable(text, span[-1], token)
                and _continues(text, [token], tokens[index + 1])
            ):
                span.extend((token, tokens[index + 1]))
                index += 2
            else:
                break
        spans.append(span)
    return spans


def _trim_sentence_start(span: list[Token], tokens: Sequence[Token]) -> list[Token]:
    """``span`` without the words that merely open its sentence: leading openers
    (``The``, ``Overall``, ``Thanks``), and a lone word that is common, that the text
    also writes in lower case (``Battery`` when it says ``battery`` elsewhere) or that has
    the ending of an adjective, a participle or an adverb (``Mixed``, ``Shipping``)."""
    if not span[0].sentence_start:
        return span

    def ordinary(token: Token) -> bool:
        return not _is_acronym(token) and token.lower not in _TITLES

    while span and ordinary(span[0]) and word_info(span[0].lower).opener:
        span = span[1:]
        while span and span[0].lower in _CONNECTORS:
            span = span[1:]
    if (
        len(span) == 1
        and ordinary(span[0])
        and (
            word_info(span[0].lower).common
            or _written_in_lower_case(span[0].lower, tokens)
            or _has_word_suffix(span[0].lower)
        )
    ):
        return []
    return span


def _has_word_suffix(word: str) -> bool:
    """Whether ``word`` ends like an adjective, a participle or an adverb, with at least
    three letters before the ending (``Mixed``, not ``Ted``), and is no known place."""
    return word not in _PLACES and any(
        word.endswith(suffix) and len(word) >= len(suffix) + 3 for suffix in _WORD_SUFFIXES
    )


def _written_in_lower_case(word: str, tokens: Sequence[Token]) -> bool:
    return any(token.text == word for token in tokens)


def _span_type(words: Sequence[str], lowered: str) -> EntityType:
    if words[0] in _TITLES and len(words) > 1:
        return "person"
    if words[-1] in _ORGANIZATION_SUFFIXES or any(word in _ORGANIZATION_WORDS for word in words):
        return "organization"
    if lowered in _PLACES or any(word in _PLACE_WORDS for word in words):
        return "place"
    if len(words) == 1 and _MONTH_WORD.fullmatch(words[0].capitalize()):
        return "date"
    return "other"


def _free(taken: list[tuple[int, int]], start: int, end: int) -> bool:
    return all(end <= begin or start >= stop for begin, stop in taken)


def entities(
    text: str, tokens: Sequence[Token], limit: int = ENTITIES_PER_TEXT
) -> tuple[FoundEntity, ...]:
    """The entities of ``text``, in order of appearance, each (text, type) once.

    Parameters:
        text: the text.
        tokens: its words (:func:`ragbus.lm.tokens.tokenize`).
        limit: at most this many entities (default :data:`ENTITIES_PER_TEXT`).
    """
    found: list[FoundEntity] = []
    taken: list[tuple[int, int]] = []
    has_digits = _DIGIT.search(text) is not None
    for match in (_DATE if has_digits else _WEEKDAY).finditer(text):
        found.append(FoundEntity(match.group(), "date", *match.span()))
        taken.append(match.span())
    if has_digits:
        for match in _CUED_YEAR.finditer(text):
            if _free(taken, *match.span(1)):
                found.append(FoundEntity(match.group(1), "date", *match.span(1)))
                taken.append(match.span(1))
        for match in _NUMBER.finditer(text):
            if _free(taken, *match.span()):
                found.append(FoundEntity(match.group(), "number", *match.span()))
                taken.append(match.span())
    capitalised = [token for token in tokens if token.text[0].isupper()]
    if not capitalised or _shouting(tokens, capitalised):
        return _unique(found, limit)

    def covered(token: Token) -> bool:
        return not _free(taken, token.start, token.end)

    for span in _spans(text, tokens, covered):
        span = _trim_sentence_start(span, tokens)
        if not span:
            continue
        start, end = span[0].start, span[-1].end
        surface = text[start:end]
        if surface.endswith(("'s", "\u2019s")):
            surface, end = surface[:-2], end - 2
        words = [token.lower.removesuffix("'s") for token in span]
        if len(span) == 1 and words[0] in _TITLES:
            continue
        found.append(FoundEntity(surface, _span_type(words, surface.casefold()), start, end))
    return _unique(found, limit)


def _unique(found: list[FoundEntity], limit: int) -> tuple[FoundEntity, ...]:
    """``found`` in text order, each (text, type) once, at most ``limit``."""
    found.sort(key=lambda entity: entity.start)
    unique: list[FoundEntity] = []
    seen: set[tuple[str, str]] = set()
    for entity in found:
        key = (entity.text, entity.type)
        if key not in seen:
            seen.add(key)
            unique.append(entity)
    return tuple(unique[:limit])
