"""Loading a folder of documents into passages.

A corpus is a folder, searched recursively, of:

- ``.md`` files: split by headings and paragraphs (see :mod:`ragbus.retrieval.chunking`);
  the nearest heading is the passage title.
- ``.txt`` files: split by paragraphs; the file name is the title.
- ``.jsonl`` files: one passage per line, an object with ``text`` (required) and
  optional ``id`` and ``title``.

A passage's ``doc_id`` is the file's path relative to the corpus folder, ``#`` and the
passage's index in the file (``guide/retries.md#2``); a JSONL line's ``id`` replaces it.
Names starting with ``.`` are skipped. A folder on disk is walked by
:mod:`ragbus.retrieval.walk`, which never leaves it, never loops and limits how much is
read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from typing import Final

from ragbus.errors import ConfigurationError
from ragbus.payloads.rag import MAX_PASSAGE_CHARS, Passage
from ragbus.retrieval.chunking import MAX_WORDS, MIN_WORDS, split_document
from ragbus.retrieval.walk import (
    DOCUMENT_SUFFIXES,
    CorpusLimits,
    Skipped,
    list_documents,
    read_document,
)

logger = logging.getLogger(__name__)

_MAX_ID_CHARS: Final = 500
_MAX_TITLE_CHARS: Final = 500


@dataclass(frozen=True, slots=True)
class CorpusPassage:
    """A passage of the corpus: its id, title and text."""

    doc_id: str
    title: str
    text: str

    def with_score(self, score: float) -> Passage:
        """This passage as an event :class:`~ragbus.payloads.rag.Passage` with ``score``."""
        return Passage(doc_id=self.doc_id, title=self.title, text=self.text, score=score)


def _documents(node: Traversable, relative: PurePosixPath) -> Iterator[tuple[str, Traversable]]:
    """Every document file under ``node`` with its relative path, sorted by name."""
    for child in sorted(node.iterdir(), key=lambda item: item.name):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            yield from _documents(child, relative / child.name)
        elif child.is_file() and child.name.endswith(DOCUMENT_SUFFIXES):
            yield (relative / child.name).as_posix(), child


def decode_document(data: bytes, name: str) -> str:
    """The text of the document ``name`` whose bytes are ``data``: UTF-8, or a
    :class:`~ragbus.errors.ConfigurationError` naming the file."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"corpus file {name} is not UTF-8 text: {exc}") from exc


def _read(file: Traversable, name: str) -> str:
    try:
        return decode_document(file.read_bytes(), name)
    except OSError as exc:
        raise ConfigurationError(f"cannot read corpus file {name}: {exc}") from exc


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def parse_text_file(
    name: str,
    text: str,
    *,
    markdown: bool,
    min_words: int = MIN_WORDS,
    max_words: int = MAX_WORDS,
) -> list[CorpusPassage]:
    """The passages of one Markdown or plain-text document.

    Parameters:
        name: the file's path relative to the corpus folder (the ``doc_id`` prefix).
        text: the file's content.
        markdown: split at ``#`` headings (true for ``.md``).
        min_words: a passage is closed once it has this many words (default 80).
        max_words: no passage has more words than this (default 200).
    """
    default_title = PurePosixPath(name).stem
    chunks = split_document(
        text,
        default_title=default_title,
        markdown=markdown,
        min_words=min_words,
        max_words=max_words,
    )
    return [
        CorpusPassage(
            doc_id=f"{name}#{index}",
            title=_cut(chunk.title, _MAX_TITLE_CHARS),
            text=_cut(chunk.text, MAX_PASSAGE_CHARS),
        )
        for index, chunk in enumerate(chunks)
    ]


def _jsonl_field(record: dict[str, object], key: str, where: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if key == "id" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ConfigurationError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    return value.strip()


def parse_jsonl_file(name: str, text: str) -> list[CorpusPassage]:
    """The passages of one JSONL document, one per non-blank line.

    Each line is an object with ``text`` (required, non-empty), and optional ``id``
    (string or integer; default ``<name>#<line number>``) and ``title`` (default the
    file name without suffix). Raises :class:`~ragbus.errors.ConfigurationError` naming
    the file and line of the first invalid line.

    Parameters:
        name: the file's path relative to the corpus folder.
        text: the file's content.
    """
    passages: list[CorpusPassage] = []
    default_title = PurePosixPath(name).stem
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise ConfigurationError(
                f"{where}: expected a JSON object with 'text', got {type(record).__name__}"
            )
        body = _jsonl_field(record, "text", where)
        if not body:
            raise ConfigurationError(f"{where}: missing or empty 'text'")
        if len(body) > MAX_PASSAGE_CHARS:
            raise ConfigurationError(
                f"{where}: 'text' has {len(body)} characters (limit {MAX_PASSAGE_CHARS})"
            )
        doc_id = _jsonl_field(record, "id", where) or f"{name}#{number}"
        if len(doc_id) > _MAX_ID_CHARS:
            raise ConfigurationError(f"{where}: 'id' is longer than {_MAX_ID_CHARS} characters")
        title = _jsonl_field(record, "title", where) or default_title
        passages.append(
            CorpusPassage(doc_id=doc_id, title=_cut(title, _MAX_TITLE_CHARS), text=body)
        )
    return passages


def parse_document(
    name: str, text: str, *, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS
) -> list[CorpusPassage]:
    """The passages of one document, parsed by its suffix (``.jsonl``, ``.md`` or text).

    Parameters:
        name: the file's path relative to the corpus folder.
        text: the file's content.
        min_words: a Markdown/text passage is closed at this many words (default 80).
        max_words: no Markdown/text passage has more words than this (default 200).
    """
    if name.endswith(".jsonl"):
        return parse_jsonl_file(name, text)
    return parse_text_file(
        name, text, markdown=name.endswith(".md"), min_words=min_words, max_words=max_words
    )


def checked_passages(passages: list[CorpusPassage], root: object) -> list[CorpusPassage]:
    """``passages``, once they are known to be some and to have unique ids; a
    :class:`~ragbus.errors.ConfigurationError` naming ``root`` otherwise.

    Parameters:
        passages: the passages of a corpus.
        root: the corpus, as named in the error.
    """
    if not passages:
        raise ConfigurationError(f"the documents in corpus {root} contain no text")
    seen: set[str] = set()
    for passage in passages:
        if passage.doc_id in seen:
            raise ConfigurationError(f"corpus {root}: two passages have the id {passage.doc_id!r}")
        seen.add(passage.doc_id)
    return passages


def no_documents(root: object) -> ConfigurationError:
    """The error for a corpus ``root`` without a document."""
    suffixes = ", ".join(DOCUMENT_SUFFIXES)
    return ConfigurationError(f"no documents ({suffixes}) found in corpus {root}")


@dataclass(frozen=True, slots=True)
class CorpusRead:
    """The passages of a corpus folder, and the entries that were skipped (and why)."""

    passages: list[CorpusPassage]
    skipped: Sequence[Skipped]


def read_corpus(
    path: Path,
    *,
    limits: CorpusLimits | None = None,
    min_words: int = MIN_WORDS,
    max_words: int = MAX_WORDS,
    progress: Callable[[int, int], None] | None = None,
) -> CorpusRead:
    """The passages of the documents in the folder (or file) ``path``, and what was
    skipped: symlinks leading outside the folder, loops, files that are not regular.

    Raises :class:`~ragbus.errors.ConfigurationError` when ``path`` does not exist or
    holds no document, for a file over the size limit or too many files, and for any
    unreadable or invalid file (naming it, and for JSONL the line).

    Parameters:
        path: a folder searched recursively for ``.md``, ``.txt`` and ``.jsonl`` files,
            or a single such file.
        limits: size and count limits (default :class:`~ragbus.retrieval.walk.CorpusLimits`).
        min_words: a Markdown/text passage is closed at this many words (default 80).
        max_words: no Markdown/text passage has more words than this (default 200).
        progress: called with (documents read, documents found) after each document
            (default: none), e.g. to show how far reading is.
    """
    listing = list_documents(path, limits)
    if not listing.files:
        raise no_documents(path)
    passages: list[CorpusPassage] = []
    for done, file in enumerate(listing.files, start=1):
        text = decode_document(read_document(file, limits), file.name)
        passages.extend(parse_document(file.name, text, min_words=min_words, max_words=max_words))
        if progress is not None:
            progress(done, len(listing.files))
    return CorpusRead(checked_passages(passages, path), tuple(listing.skipped))


def load_corpus(
    path: Path,
    *,
    limits: CorpusLimits | None = None,
    min_words: int = MIN_WORDS,
    max_words: int = MAX_WORDS,
) -> list[CorpusPassage]:
    """The passages of the documents in the folder (or file) ``path`` (see
    :func:`read_corpus`); each skipped entry is logged as a warning.

    Parameters:
        path: a folder searched recursively, or a single document file.
        limits: size and count limits (default :class:`~ragbus.retrieval.walk.CorpusLimits`).
        min_words: a Markdown/text passage is closed at this many words (default 80).
        max_words: no Markdown/text passage has more words than this (default 200).
    """
    read = read_corpus(path, limits=limits, min_words=min_words, max_words=max_words)
    for skipped in read.skipped:
        logger.warning("corpus %s: skipped %s: %s", path, skipped.name, skipped.reason)
    return read.passages


def load_documents(
    root: Traversable, *, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS
) -> list[CorpusPassage]:
    """The passages of every document in a package's resources (the bundled corpus), in
    path order. A folder on disk goes through :func:`load_corpus`, which is safe for
    untrusted folders.

    Parameters:
        root: a folder of package resources, or a folder on disk.
        min_words: a Markdown/text passage is closed at this many words (default 80).
        max_words: no Markdown/text passage has more words than this (default 200).
    """
    if isinstance(root, Path):
        return load_corpus(root, min_words=min_words, max_words=max_words)
    files = list(_documents(root, PurePosixPath()))
    if not files:
        raise no_documents(root)
    passages: list[CorpusPassage] = []
    for name, file in files:
        passages.extend(
            parse_document(name, _read(file, name), min_words=min_words, max_words=max_words)
        )
    return checked_passages(passages, root)
