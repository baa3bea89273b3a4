"""The offline text analysis's word lists, and what one word means to it.

Every list here is written by hand for ragbus: a compact English sentiment lexicon (a few
hundred words with a valence from -3 to 3, in the spirit of VADER but much smaller and
not derived from it), negators, intensifiers and dampeners, and the common words that are
neither topics nor names. Nothing is downloaded. Sentiment words are matched by their
exact lower-cased form first, then by their Snowball stem (so ``disappointing`` and
``disappointed`` share ``disappoint``), except for the words whose stem is also an
everyday neutral word (:data:`EXACT_ONLY`, :data:`NEUTRAL_FORMS`).

:func:`word_info` answers everything the analysis asks about a word at once and is
memoized: texts repeat their words, and stemming costs tens of microseconds a word.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

from ragbus.text import STOPWORDS, stem

#: Valence of each sentiment word, -3 (most negative) .. 3 (most positive).
VALENCES: Final[dict[str, float]] = {
    # positive
    "excellent": 3.0,
    "amazing": 3.0,
    "awesome": 3.0,
    "fantastic": 3.0,
    "wonderful": 3.0,
    "outstanding": 3.0,
    "superb": 3.0,
    "brilliant": 3.0,
    "perfect": 3.0,
    "love": 3.0,
    "loved": 3.0,
    "loves": 3.0,
    "loving": 2.5,
    "delightful": 3.0,
    "incredible": 3.0,
    "exceptional": 3.0,
    "magnificent": 3.0,
    "marvelous": 3.0,
    "marvellous": 3.0,
    "terrific": 3.0,
    "phenomenal": 3.0,
    "spectacular": 3.0,
    "flawless": 3.0,
    "best": 3.0,
    "great": 3.0,
    "thrilled": 3.0,
    "ecstatic": 3.0,
    "joy": 2.5,
    "beautiful": 2.5,
    "lovely": 2.5,
    "gorgeous": 2.5,
    "delicious": 2.5,
    "good": 2.0,
    "nice": 2.0,
    "happy": 2.5,
    "happier": 2.5,
    "happiest": 3.0,
    "pleased": 2.0,
    "glad": 2.0,
    "enjoy": 2.0,
    "enjoyed": 2.0,
    "enjoyable": 2.0,
    "impressive": 2.5,
    "impressed": 2.0,
    "helpful": 2.0,
    "friendly": 2.0,
    "fun": 2.0,
    "funny": 1.5,
    "pleasant": 2.0,
    "satisfied": 2.0,
    "satisfying": 2.0,
    "success": 2.0,
    "successful": 2.0,
    "succeed": 2.0,
    "win": 2.0,
    "winner": 2.0,
    "favorite": 2.0,
    "favourite": 2.0,
    "excited": 2.0,
    "exciting": 2.0,
    "appreciate": 2.0,
    "grateful": 2.0,
    "thankful": 2.0,
    "thanks": 1.5,
    "thank": 1.5,
    "proud": 2.0,
    "praise": 2.0,
    "elegant": 2.0,
    "charming": 2.0,
    "cheerful": 2.0,
    "optimistic": 2.0,
    "ideal": 2.0,
    "superior": 2.0,
    "remarkable": 2.0,
    "generous": 2.0,
    "tasty": 2.0,
    "valuable": 1.5,
    "recommend": 1.5,
    "recommended": 1.5,
    "recommends": 1.5,
    "reliable": 1.5,
    "comfortable": 1.5,
    "better": 1.5,
    "easy": 1.5,
    "efficient": 1.5,
    "hopeful": 1.5,
    "improved": 1.5,
    "improvement": 1.5,
    "improve": 1.0,
    "smooth": 1.0,
    "solid": 1.0,
    "strong": 1.0,
    "fresh": 1.0,
    "clean": 1.0,
    "calm": 1.0,
    "safe": 1.0,
    "accurate": 1.0,
    "affordable": 1.0,
    "cool": 1.0,
    "fine": 1.0,
    "hope": 1.0,
    "gain": 1.0,
    "benefit": 1.0,
    "wow": 1.5,
    # negative
    "terrible": -3.0,
    "awful": -3.0,
    "horrible": -3.0,
    "worst": -3.0,
    "hate": -3.0,
    "hated": -3.0,
    "hates": -3.0,
    "disgusting": -3.0,
    "dreadful": -3.0,
    "atrocious": -3.0,
    "appalling": -3.0,
    "abysmal": -3.0,
    "miserable": -3.0,
    "disaster": -3.0,
    "disastrous": -3.0,
    "catastrophe": -3.0,
    "tragic": -3.0,
    "tragedy": -3.0,
    "scam": -3.0,
    "fraud": -3.0,
    "pathetic": -2.5,
    "useless": -2.5,
    "worthless": -2.5,
    "bad": -2.5,
    "angry": -2.5,
    "furious": -3.0,
    "rude": -2.5,
    "ugly": -2.5,
    "nasty": -2.5,
    "stupid": -2.5,
    "toxic": -2.5,
    "hostile": -2.5,
    "hopeless": -2.5,
    "depressing": -2.5,
    "depressed": -2.5,
    "unacceptable": -2.5,
    "incompetent": -2.5,
    "outrageous": -2.5,
    "shameful": -2.5,
    "poor": -2.0,
    "poorly": -2.0,
    "disappointing": -2.0,
    "disappointed": -2.0,
    "disappointment": -2.0,
    "sad": -2.0,
    "unhappy": -2.0,
    "upset": -2.0,
    "annoying": -2.0,
    "annoyed": -2.0,
    "frustrating": -2.0,
    "frustrated": -2.0,
    "broken": -2.0,
    "fail": -2.0,
    "failed": -2.0,
    "fails": -2.0,
    "failure": -2.0,
    "overpriced": -2.0,
    "dirty": -2.0,
    "boring": -2.0,
    "unreliable": -2.0,
    "buggy": -2.0,
    "crash": -2.0,
    "crashed": -2.0,
    "crashes": -2.0,
    "worse": -2.0,
    "fear": -2.0,
    "scary": -2.0,
    "dangerous": -2.0,
    "damage": -2.0,
    "damaged": -2.0,
    "pain": -2.0,
    "painful": -2.0,
    "hurt": -2.0,
    "ridiculous": -2.0,
    "waste": -2.0,
    "wasted": -2.0,
    "regret": -2.0,
    "shame": -2.0,
    "mess": -2.0,
    "inferior": -2.0,
    "greedy": -2.0,
    "fake": -2.0,
    "pointless": -2.0,
    "severe": -2.0,
    "lousy": -2.5,
    "problem": -1.5,
    "problems": -1.5,
    "bored": -1.5,
    "mediocre": -1.5,
    "error": -1.5,
    "errors": -1.5,
    "wrong": -1.5,
    "worried": -1.5,
    "worry": -1.5,
    "afraid": -1.5,
    "loss": -1.5,
    "lose": -1.5,
    "complaint": -1.5,
    "complain": -1.5,
    "unfortunately": -1.5,
    "sadly": -1.5,
    "noisy": -1.5,
    "confusing": -1.5,
    "confused": -1.5,
    "messy": -1.5,
    "weak": -1.5,
    "lazy": -1.5,
    "sorry": -1.0,
    "slow": -1.0,
    "expensive": -1.0,
    "bug": -1.0,
    "delay": -1.0,
    "delayed": -1.0,
    "lack": -1.0,
    "missing": -1.0,
    "difficult": -1.0,
    "crowded": -1.0,
    "risk": -1.0,
    "decline": -1.0,
}

#: Sentiment words matched only as written: their stem is also an everyday neutral word
#: (``excellent`` stems to ``excel``, ``wonderful`` to ``wonder``, ``awful`` to ``aw``).
EXACT_ONLY: Final = frozenset(
    {
        "affordable",
        "awful",
        "clean",
        "cool",
        "crowded",
        "excellent",
        "exceptional",
        "fine",
        "friendly",
        "helpful",
        "impressed",
        "impressive",
        "marvellous",
        "marvelous",
        "miserable",
        "missing",
        "pleased",
        "recommend",
        "recommended",
        "recommends",
        "remarkable",
        "wonderful",
    }
)

#: Words that share a Snowball stem with a stemmed sentiment word but carry no sentiment.
NEUTRAL_FORMS: Final = frozenset({"several", "goods", "expense", "expenses"})

#: Words that reverse the sentiment of what follows them in the same clause.
NEGATORS: Final = frozenset(
    {
        "not",
        "no",
        "never",
        "none",
        "nobody",
        "nothing",
        "neither",
        "nor",
        "nowhere",
        "cannot",
        "without",
        "hardly",
        "scarcely",
    }
)

#: Words that strengthen (> 0) or soften (< 0) the sentiment word right after them:
#: the share by which its valence grows or shrinks.
MODIFIERS: Final[dict[str, float]] = {
    "very": 0.3,
    "really": 0.3,
    "so": 0.3,
    "truly": 0.3,
    "most": 0.3,
    "extremely": 0.5,
    "incredibly": 0.5,
    "absolutely": 0.5,
    "utterly": 0.5,
    "exceptionally": 0.5,
    "totally": 0.4,
    "completely": 0.4,
    "highly": 0.4,
    "deeply": 0.4,
    "hugely": 0.4,
    "terribly": 0.4,
    "awfully": 0.3,
    "seriously": 0.3,
    "remarkably": 0.3,
    "particularly": 0.2,
    "especially": 0.2,
    "quite": 0.15,
    "pretty": 0.15,
    "fairly": -0.2,
    "rather": -0.2,
    "kinda": -0.3,
    "bit": -0.3,
    "little": -0.3,
    "somewhat": -0.4,
    "partly": -0.4,
    "slightly": -0.5,
    "mildly": -0.5,
    "marginally": -0.5,
    "barely": -0.6,
}

#: Words that turn a sentence around: what follows them weighs more than what precedes.
CONTRASTS: Final = frozenset({"but", "however"})

#: Frequent words that are too general to be a topic (beyond the stopwords).
GENERIC_WORDS: Final = frozenset(
    {
        "also",
        "would",
        "could",
        "might",
        "must",
        "shall",
        "may",
        "one",
        "two",
        "three",
        "many",
        "much",
        "lot",
        "lots",
        "thing",
        "things",
        "something",
        "anything",
        "everything",
        "someone",
        "anyone",
        "everyone",
        "way",
        "even",
        "still",
        "yet",
        "ever",
        "already",
        "always",
        "often",
        "maybe",
        "perhaps",
        "actually",
        "well",
        "back",
        "around",
        "every",
        "since",
        "though",
        "although",
        "however",
        "therefore",
        "thus",
        "etc",
        "via",
        "per",
        "upon",
        "within",
        "among",
        "across",
        "toward",
        "towards",
        "yes",
        "okay",
        "ok",
        "oh",
        "hi",
        "hello",
        "please",
        "like",
        "said",
        "says",
        "say",
        "get",
        "gets",
        "got",
        "make",
        "makes",
        "made",
        "go",
        "goes",
        "went",
        "gone",
        "going",
        "come",
        "came",
        "take",
        "took",
        "know",
        "think",
        "thought",
        "want",
        "wanted",
        "need",
        "needed",
        "use",
        "used",
        "see",
        "seen",
        "saw",
        "look",
        "looks",
        "seem",
        "seems",
        "seemed",
        "feel",
        "felt",
        "tell",
        "told",
        "give",
        "gave",
        "put",
        "try",
        "tried",
        "let",
        "keep",
        "kept",
        "day",
        "days",
        "time",
        "times",
        "today",
        "yesterday",
        "tomorrow",
        "really",
        "kind",
        "sort",
        "new",
        "old",
        "first",
        "last",
        "next",
        "another",
        "either",
        "whole",
        "sure",
        "able",
        "latest",
        "recent",
        "guess",
        "believe",
        "keeps",
        "us",
        "everybody",
        "somebody",
        "people",
        "mr",
        "mrs",
        "ms",
        "dr",
        "inc",
        "ltd",
        "corp",
        "llc",
        "plc",
        "january",
        "february",
        "march",
        "april",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    }
)

#: Words that often open a sentence capitalised without naming anything (adverbs,
#: greetings, imperatives).
SENTENCE_STARTERS: Final = frozenset(
    {
        "overall",
        "honestly",
        "finally",
        "thanks",
        "dear",
        "anyway",
        "meanwhile",
        "instead",
        "otherwise",
        "besides",
        "later",
        "earlier",
        "recently",
        "apparently",
        "hopefully",
        "luckily",
        "sadly",
        "unfortunately",
        "fortunately",
        "please",
        "great",
        "wow",
        "well",
        "yes",
        "yesterday",
        "today",
        "tomorrow",
        "tonight",
        # imperatives
        "ask",
        "call",
        "check",
        "contact",
        "visit",
        "meet",
        "read",
        "watch",
        "buy",
        "avoid",
    }
)

#: Valence multiplier of a negated sentiment word (VADER's choice: a negated word keeps
#: about three quarters of its strength, reversed).
NEGATION_SCALE: Final = -0.74

# Shortest and longest topic word (a long run of letters is unsegmented script, no word).
_TOPIC_LENGTH: Final = (3, 30)

_STEM_VALENCES: Final[dict[str, float]] = {}
for _word, _word_valence in VALENCES.items():
    if _word not in EXACT_ONLY:
        _STEM_VALENCES.setdefault(stem(_word), _word_valence)


@dataclass(frozen=True, slots=True)
class WordInfo:
    """What the offline analysis knows about one lower-cased word.

    Parameters:
        valence: its sentiment, -3 .. 3 (0 for none).
        negator: whether it reverses the sentiment that follows.
        modifier: the share by which it strengthens (> 0) or softens (< 0) the next
            sentiment word (0 for none).
        contrast: whether it turns the sentence around (``but``).
        topic: the stem it counts under as a topic, or ``None`` when it is no topic word.
        common: whether it is a common word (capitalised alone at a sentence's start, it
            is no name).
        opener: whether it is a word that opens sentences without being part of a name
            (a stopword, an adverb, ``Overall``, ``Thanks``), even before one.
    """

    valence: float
    negator: bool
    modifier: float
    contrast: bool
    topic: str | None
    common: bool
    opener: bool


def _is_negator(word: str) -> bool:
    return word in NEGATORS or word.endswith("n't")


def _valence(word: str) -> float:
    if word in VALENCES:
        return VALENCES[word]
    if word in NEUTRAL_FORMS or word in MODIFIERS or word in NEGATORS:
        return 0.0
    return _STEM_VALENCES.get(stem(word), 0.0)


def _topic_stem(word: str, valence: float, opener: bool) -> str | None:
    base = word.removesuffix("'s")
    if (
        not _TOPIC_LENGTH[0] <= len(base) <= _TOPIC_LENGTH[1]
        or not base.isalpha()
        or valence
        or opener
        or base in STOPWORDS
        or base in GENERIC_WORDS
    ):
        return None
    return stem(base)


@functools.lru_cache(maxsize=50_000)
def word_info(word: str) -> WordInfo:
    """Everything the analysis needs to know about ``word`` (memoized).

    Parameters:
        word: a lower-cased word (a straight apostrophe in contractions).
    """
    valence = _valence(word)
    negator = _is_negator(word)
    modifier = MODIFIERS.get(word, 0.0)
    opener = (
        negator
        or bool(modifier)
        or word in STOPWORDS
        or word in SENTENCE_STARTERS
        or (word.endswith("ly") and len(word) > 4)
    )
    return WordInfo(
        valence=valence,
        negator=negator,
        modifier=modifier,
        contrast=word in CONTRASTS,
        topic=_topic_stem(word, valence, opener),
        common=opener or bool(valence) or word in GENERIC_WORDS,
        opener=opener,
    )
