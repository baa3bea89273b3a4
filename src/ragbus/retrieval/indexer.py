"""Keeping a saved index current with its documents: ``ragbus index PATH``.

An update reads every document (the walk of :mod:`ragbus.retrieval.walk`: inside the
folder, limited in size and count) and compares the SHA-256 of its content with the
one the index recorded:

- an unchanged file keeps its passages as they were (it is not split again);
- a new or changed file is split again; a file gone from the folder leaves the index;
- a passage is embedded only when no passage of the previous index had the same text
  (title and text) under the same model, so changing one file embeds that file's
  changed passages and nothing else;
- the BM25 index is rebuilt over all passages: its term statistics are corpus-wide,
  and rebuilding it takes no network call (seconds for 100,000 passages).

When nothing changed (the same files with the same content, the same embedding
model), the saved index is left untouched: the corpus version stays the same, and so
do the cache keys of every stage that depends on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np

from ragbus.errors import ConfigurationError
from ragbus.retrieval.corpus import (
    CorpusPassage,
    checked_passages,
    decode_document,
    no_documents,
    parse_document,
)
from ragbus.retrieval.embedder import Embedder
from ragbus.retrieval.index import SearchIndex, indexed_text
from ragbus.retrieval.saved import (
    CHUNKING,
    CorpusIndex,
    Embeddings,
    IndexedFile,
    check_replaceable,
    is_saved_index,
    read_manifest,
)
from ragbus.retrieval.vectors import Matrix
from ragbus.retrieval.walk import CorpusLimits, Skipped, list_documents, read_document

#: The phases an update reports progress of.
READING: Final = "reading"
EMBEDDING: Final = "embedding"

#: Called with (phase, done, total) as an update goes.
Progress = Callable[[str, int, int], None]


@dataclass
class IndexUpdate:
    """What an update did.

    Parameters:
        index: the index now saved.
        added: documents new to the index.
        changed: documents whose content changed.
        removed: documents gone from the folder.
        unchanged: documents as they were.
        embedded: passages embedded by this update.
        reused: passages whose vectors came from the previous index.
        skipped: entries of the folder that were not read, and why.
        written: whether the saved index was replaced (false when nothing changed).
        rebuilt: why the previous index could not be reused, if it could not.
    """

    index: CorpusIndex
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    embedded: int = 0
    reused: int = 0
    skipped: Sequence[Skipped] = ()
    written: bool = True
    rebuilt: str | None = None


def _text_key(passage: CorpusPassage) -> str:
    return hashlib.sha256(indexed_text(passage).encode()).hexdigest()


def _previous(target: Path) -> tuple[CorpusIndex | None, str | None]:
    """The index saved at ``target`` if it can be reused, else why not."""
    if not is_saved_index(target):
        return None, None
    try:
        manifest = read_manifest(target)
        previous = CorpusIndex.load(target)
    except ConfigurationError as exc:
        return None, str(exc)
    if manifest.get("chunking") != CHUNKING:
        return None, "it was split into passages by other rules"
    return previous, None


class _Passages:
    """The passages of each file of the previous index, by file name."""

    def __init__(self, previous: CorpusIndex | None) -> None:
        self.files: dict[str, tuple[IndexedFile, tuple[CorpusPassage, ...]]] = {}
        if previous is not None:
            start = 0
            for file in previous.files:
                end = start + file.passages
                self.files[file.name] = (file, previous.passages[start:end])
                start = end

    def unchanged(self, name: str, sha256: str) -> tuple[CorpusPassage, ...] | None:
        known = self.files.get(name)
        return known[1] if known is not None and known[0].sha256 == sha256 else None


async def update_index(
    source: Path,
    target: Path,
    *,
    embedder: Embedder | None = None,
    limits: CorpusLimits | None = None,
    progress: Progress | None = None,
) -> IndexUpdate:
    """Bring the index saved at ``target`` up to date with the documents at ``source``
    (see the module docstring); build it when there is none.

    Raises :class:`~ragbus.errors.ConfigurationError` for a corpus that cannot be
    indexed (see :func:`~ragbus.retrieval.corpus.read_corpus`) or a ``target`` that is
    not an index, and what the embedding model's client raises.

    Parameters:
        source: a folder searched recursively for ``.md``, ``.txt`` and ``.jsonl``
            files, or one such file.
        target: the index folder.
        embedder: the embedding model (default: none, an index without embeddings).
        limits: size and count limits (default :class:`CorpusLimits`).
        progress: told ``(READING | EMBEDDING, done, total)`` as the update goes
            (default: none).
    """
    limits = limits or CorpusLimits()
    check_replaceable(target)  # before any work: never embed a corpus only to fail here
    previous, rebuilt = _previous(target)
    known = _Passages(previous)
    listing = list_documents(source, limits)
    if not listing.files:
        raise no_documents(source)
    added: list[str] = []
    changed: list[str] = []
    unchanged: list[str] = []
    files: list[IndexedFile] = []
    passages: list[CorpusPassage] = []
    for done, document in enumerate(listing.files, start=1):
        data = read_document(document, limits)
        sha256 = hashlib.sha256(data).hexdigest()
        kept = known.unchanged(document.name, sha256)
        if kept is not None:
            found = list(kept)
            unchanged.append(document.name)
        else:
            found = parse_document(document.name, decode_document(data, document.name))
            (changed if document.name in known.files else added).append(document.name)
        files.append(IndexedFile(document.name, sha256, len(found)))
        passages.extend(found)
        if progress is not None:
            progress(READING, done, len(listing.files))
    listed = {document.name for document in listing.files}
    removed = [name for name in known.files if name not in listed]
    checked_passages(passages, source)

    model = embedder.model if embedder is not None else None
    old_model = previous.embeddings.model if previous and previous.embeddings else None
    if previous is not None and not (added or changed or removed) and model == old_model:
        reused = len(previous) if model else 0
        return IndexUpdate(
            previous, added, changed, removed, unchanged, 0, reused, listing.skipped, False
        )

    embeddings, embedded, reused = None, 0, 0
    if embedder is not None:
        embeddings, embedded = await _embed(passages, embedder, previous, progress)
        reused = len(passages) - embedded
    index = CorpusIndex(SearchIndex.build(passages), tuple(files), embeddings)
    index.save(target)
    return IndexUpdate(
        index, added, changed, removed, unchanged, embedded, reused, listing.skipped, True, rebuilt
    )


async def _embed(
    passages: Sequence[CorpusPassage],
    embedder: Embedder,
    previous: CorpusIndex | None,
    progress: Progress | None,
) -> tuple[Embeddings, int]:
    """The vectors of ``passages``: those of the previous index where a passage's text
    was there before under the same model, the model's for the others (each distinct
    text embedded once); and how many passages had no vector before."""
    rows: dict[str, Matrix] = {}
    old = previous.embeddings if previous is not None else None
    if previous is not None and old is not None and old.model == embedder.model:
        for row, passage in enumerate(previous.passages):
            rows.setdefault(_text_key(passage), old.vectors[row])
    keys = [_text_key(passage) for passage in passages]
    missing: dict[str, str] = {}
    for key, passage in zip(keys, passages, strict=True):
        if key not in rows and key not in missing:
            missing[key] = indexed_text(passage)
    embedded = sum(1 for key in keys if key not in rows)
    if missing:
        total = len(missing)

        def report(done: int) -> None:
            if progress is not None:
                progress(EMBEDDING, done, total)

        fresh = await embedder.embed(list(missing.values()), progress=report)
        dimensions = {row.shape[0] for row in rows.values()}
        if dimensions and dimensions != {fresh.shape[1]}:
            raise ConfigurationError(
                f"{embedder.model} now returns vectors of {fresh.shape[1]} dimensions, the "
                f"index holds {dimensions.pop()}: delete the index and run `ragbus index` again"
            )
        rows.update(zip(missing, fresh, strict=True))
    matrix = np.ascontiguousarray(np.vstack([rows[key] for key in keys]), dtype=np.float32)
    return Embeddings(embedder.model, matrix), embedded
