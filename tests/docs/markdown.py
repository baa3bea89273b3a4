"""The fenced blocks of the documentation: found with Sybil, one :class:`Block` each.

Sybil's Markdown lexers find every fenced block (backticks or tildes, inside lists and
quotes, nested fences) and every ``<!-- skip: ... -->`` comment, with line numbers.
Sybil's own skip directive marks an excluded example, and its reason is required:

    <!-- skip: next "docker compose needs a Docker engine; CI machines have none" -->

``skip: start "reason"`` ... ``skip: end`` excludes every block in between.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sybil import Document, Region
from sybil.parsers.markdown import SkipParser
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

ROOT = Path(__file__).resolve().parents[2]

#: The fence's language word -> the language an example is run as.
LANGUAGES = {
    "python": "python",
    "py": "python",
    "bash": "bash",
    "sh": "bash",
    "shell": "bash",
    "json": "json",
    "javascript": "javascript",
    "js": "javascript",
}

#: Fence languages of illustrations (diagrams, layouts, the shape of an output): shown,
#: not run, and not counted as examples.
ILLUSTRATIONS = frozenset({"", "text"})


def documents() -> list[Path]:
    """The documentation whose examples are run: README.md and every docs/*.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    """One fenced block.

    Parameters:
        path: the document.
        line: the line of its opening fence (1-based).
        info: the fence's info string (``bash``, ``python``, ...; "" for none).
        source: the block's text.
        excluded: why it is not run (a ``skip`` directive's reason), or None.
    """

    path: Path
    line: int
    info: str
    source: str
    excluded: str | None = None

    @property
    def fence_language(self) -> str:
        """The first word of the info string, lower case ("" for none)."""
        words = self.info.split()
        return words[0].lower() if words else ""

    @property
    def language(self) -> str | None:
        """The language it runs as; None for an illustration or an unknown language."""
        return LANGUAGES.get(self.fence_language)

    @property
    def is_illustration(self) -> bool:
        return self.fence_language in ILLUSTRATIONS

    @property
    def name(self) -> str:
        """``docs/events.md:123`` (the opening fence's line)."""
        return f"{shown_path(self.path)}:{self.line}"


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


class _Fence(NamedTuple):
    """What the fenced-block parser makes of a block."""

    info: str
    source: str


def _fenced_blocks(document: Document) -> Iterable[Region]:
    """Sybil parser: a region for every fenced block, parsed into a :class:`_Fence`."""
    lexer = RawFencedCodeBlockLexer(
        info_pattern=re.compile(r"(?P<info>[^\n]*)$\n", re.MULTILINE),
        mapping={"info": "info", "source": "source"},
    )
    for region in lexer(document):
        region.parsed = _Fence(str(region.lexemes["info"]).strip(), str(region.lexemes["source"]))
        yield region


def _reason(arguments: tuple[str, str | None], where: str) -> str:
    """The reason of a ``skip: next|start`` directive: a quoted, non-empty string."""
    action, reason = arguments
    try:
        value = ast.literal_eval(reason) if reason else None
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"{where}: 'skip: {action}' needs a reason in quotes, e.g. "
            f'<!-- skip: {action} "docker compose needs a Docker engine" -->'
        )
    return value.strip()


def blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path`` in order, each with its exclusion if any.

    Raises ``ValueError`` for a skip directive without a reason, a ``skip: next`` with no
    block after it, or ``skip: start`` without its ``skip: end``.
    """
    document = Document.parse(str(path), _fenced_blocks, SkipParser())
    found: list[Block] = []
    pending: str | None = None  # reason of a "skip: next" waiting for its block
    skipping: str | None = None  # reason of an open "skip: start"
    for example in document.examples():
        where = f"{shown_path(path)}:{example.line}"
        parsed = example.region.parsed
        if isinstance(parsed, _Fence):
            found.append(Block(path, example.line, parsed.info, parsed.source, pending or skipping))
            pending = None
            continue
        action, reason = parsed  # a skip directive: Sybil's SkipParser lexed (action, reason)
        if action == "next":
            pending = _reason((action, reason), where)
        elif action == "start":
            skipping = _reason((action, reason), where)
        elif action == "end":
            if skipping is None:
                raise ValueError(f"{where}: 'skip: end' without 'skip: start'")
            skipping = None
        else:
            raise ValueError(f"{where}: unknown skip action {action!r}")
    if pending is not None:
        raise ValueError(f"{shown_path(path)}: 'skip: next' with no block after it")
    if skipping is not None:
        raise ValueError(f"{shown_path(path)}: 'skip: start' without 'skip: end'")
    return found


def all_blocks() -> Iterator[Block]:
    """The blocks of every document in :func:`documents`."""
    for path in documents():
        yield from blocks(path)
