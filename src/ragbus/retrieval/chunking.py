"""Splitting Markdown and plain text into passages of a searchable size.

A passage is one or more consecutive paragraphs under the same heading, packed until it
holds at least ``min_words`` words and never more than ``max_words`` (a longer paragraph
is cut between sentences). The nearest heading becomes the passage's title.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

#: Default lower bound of words per passage (a section shorter than this stays whole).
MIN_WORDS: Final = 80
#: Default upper bound of words per passage.
MAX_WORDS: Final = 200

_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True, slots=True)
class Section:
    """The text under one heading: its title and its paragraphs, in order."""

    title: str
    paragraphs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Chunk:
    """One passage of a document before it gets an id: its title and text."""

    title: str
    text: str


def _word_count(text: str) -> int:
    return len(text.split())


def parse_sections(text: str, *, default_title: str, markdown: bool = True) -> list[Section]:
    """The sections of a document: paragraphs grouped under their nearest heading.

    Paragraphs are separated by blank lines; a fenced code block (```` ``` ```` or
    ``~~~``) stays in one paragraph, and a ``#`` inside it is not a heading.

    Parameters:
        text: the document.
        default_title: the title of text before the first heading.
        markdown: recognize ``#`` headings (default true; false for plain text).
    """
    sections: list[Section] = []
    title = default_title
    paragraphs: list[str] = []
    lines: list[str] = []
    fence: str | None = None

    def end_paragraph() -> None:
        if lines:
            paragraph = "\n".join(lines).strip()
            if paragraph:
                paragraphs.append(paragraph)
            lines.clear()

    def end_section() -> None:
        end_paragraph()
        if paragraphs:
            sections.append(Section(title=title, paragraphs=tuple(paragraphs)))
            paragraphs.clear()

    for line in text.splitlines():
        fence_match = _FENCE.match(line) if markdown else None
        if fence is not None:
            lines.append(line)
            if fence_match and fence_match.group(1) == fence:
                fence = None
            continue
        if fence_match:
            fence = fence_match.group(1)
            lines.append(line)
            continue
        heading = _HEADING.match(line) if markdown else None
        if heading:
            end_section()
            title = heading.group(2).strip() or default_title
        elif not line.strip():
            end_paragraph()
        else:
            lines.append(line.rstrip())
    end_section()
    return sections


def _split_long(paragraph: str, max_words: int) -> list[str]:
    """``paragraph`` cut between sentences (or, for one huge sentence, between words)
    into pieces of at most ``max_words`` words."""
    if _word_count(paragraph) <= max_words:
        return [paragraph]
    pieces: list[str] = []
    current: list[str] = []
    count = 0
    for sentence in _SENTENCE_END.split(paragraph):
        size = _word_count(sentence)
        if size > max_words:
            tokens = sentence.split()
            parts = [" ".join(tokens[i : i + max_words]) for i in range(0, len(tokens), max_words)]
        else:
            parts = [sentence]
        for part in parts:
            part_size = _word_count(part)
            if current and count + part_size > max_words:
                pieces.append(" ".join(current))
                current, count = [], 0
            current.append(part)
            count += part_size
    if current:
        pieces.append(" ".join(current))
    return pieces


def pack_section(
    section: Section, *, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS
) -> list[Chunk]:
    """The passages of one section.

    Parameters:
        section: the section to split.
        min_words: a passage is closed once it has this many words (default 80).
        max_words: no passage has more words than this (default 200).
    """
    groups: list[list[str]] = []
    current: list[str] = []
    count = 0
    for paragraph in section.paragraphs:
        for piece in _split_long(paragraph, max_words):
            size = _word_count(piece)
            if current and count + size > max_words:
                groups.append(current)
                current, count = [], 0
            current.append(piece)
            count += size
            if count >= min_words:
                groups.append(current)
                current, count = [], 0
    if current:
        last_size = sum(_word_count(piece) for piece in groups[-1]) if groups else 0
        if groups and last_size + count <= max_words:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return [Chunk(title=section.title, text="\n\n".join(group)) for group in groups]


def split_document(
    text: str,
    *,
    default_title: str,
    markdown: bool = True,
    min_words: int = MIN_WORDS,
    max_words: int = MAX_WORDS,
) -> list[Chunk]:
    """All passages of a document, in document order.

    Parameters:
        text: the document.
        default_title: the title of text before the first heading (or of all plain text).
        markdown: recognize ``#`` headings and code fences (default true).
        min_words: a passage is closed once it has this many words (default 80).
        max_words: no passage has more words than this (default 200).
    """
    chunks: list[Chunk] = []
    for section in parse_sections(text, default_title=default_title, markdown=markdown):
        chunks.extend(pack_section(section, min_words=min_words, max_words=max_words))
    return chunks
