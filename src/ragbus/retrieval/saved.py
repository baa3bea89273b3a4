"""A corpus index: its passages, their BM25 index and, optionally, their embeddings;
saved as a folder that a worker loads without the original documents.

The folder holds the bm25s index files, ``vectors.npy`` (one unit vector per passage,
when the index was built with an embedding model) and a manifest,
``ragbus-index.json``: the format version, the corpus version (fingerprint), the
chunking rules, each document file with the SHA-256 of its content and its number of
passages (so ``ragbus index`` can tell what changed), the passages themselves and the
embedding model. It holds corpus text, so the folder is ``0700`` and its files ``0600``;
it is written aside and put in place whole (:mod:`ragbus.retrieval.atomic_dir`).
"""

from __future__ import annotations

import functools
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ragbus.errors import ConfigurationError
from ragbus.files import PRIVATE_MODE, write_private
from ragbus.retrieval.atomic_dir import publish_folder, staging_folder
from ragbus.retrieval.chunking import MAX_WORDS, MIN_WORDS
from ragbus.retrieval.corpus import CorpusPassage, load_corpus
from ragbus.retrieval.index import SearchIndex, bundled_index, corpus_fingerprint
from ragbus.retrieval.vectors import VECTORS_NAME, Matrix, load_vectors, save_vectors
from ragbus.retrieval.walk import CorpusLimits

#: Name of the manifest file that marks a folder as a saved index.
MANIFEST_NAME: Final = "ragbus-index.json"
#: Version of the saved-index layout; a saved index of another version must be rebuilt.
INDEX_FORMAT_VERSION: Final = 2
#: How documents are split into passages; an index split otherwise is re-split.
CHUNKING: Final = {"min_words": MIN_WORDS, "max_words": MAX_WORDS}
#: Loads of a saved index retried when it was replaced while being read.
_LOAD_TRIES: Final = 3


@dataclass(frozen=True, slots=True)
class IndexedFile:
    """A document an index was built from.

    Parameters:
        name: its path relative to the corpus folder.
        sha256: the SHA-256 of its content (hex).
        passages: how many passages it gave (they are consecutive in the index).
    """

    name: str
    sha256: str
    passages: int


@dataclass(frozen=True, slots=True)
class Embeddings:
    """The passages' vectors and the model that made them.

    Parameters:
        model: the LiteLLM embedding model.
        vectors: one unit row per passage, in index order.
    """

    model: str
    vectors: Matrix

    @property
    def dimensions(self) -> int:
        """The length of each vector."""
        return int(self.vectors.shape[1])


@dataclass(frozen=True)
class CorpusIndex:
    """What the retrievers search: the passages, their BM25 index and their embeddings.

    Parameters:
        bm25: the BM25 index over the passages (it holds them, in index order).
        files: the documents they came from, in order (empty when unknown, e.g. for
            the bundled guide).
        embeddings: their vectors (default none: the index has no embeddings).
    """

    bm25: SearchIndex
    files: tuple[IndexedFile, ...] = ()
    embeddings: Embeddings | None = None

    def __post_init__(self) -> None:
        if self.files and sum(file.passages for file in self.files) != len(self.bm25):
            raise ValueError("the files' passage counts do not add up to the passages")
        if self.embeddings is not None and self.embeddings.vectors.shape[0] != len(self.bm25):
            raise ValueError("there must be one vector per passage")

    @property
    def passages(self) -> tuple[CorpusPassage, ...]:
        """The passages, in index order."""
        return self.bm25.passages

    @property
    def version(self) -> str:
        """The corpus version: a hash of the passages' ids, titles and texts (and of the
        term rules); it changes when the content does, and only then."""
        return self.bm25.fingerprint

    def __len__(self) -> int:
        return len(self.bm25)

    def save(self, directory: Path) -> None:
        """Write the index to ``directory``, whole: into a new private folder beside it,
        then moved over it in one step, so readers see the old index or the new one.

        Raises :class:`~ragbus.errors.ConfigurationError` when ``directory`` exists and
        is a file, or a folder that is not a saved index (it is never replaced). A
        symlink at ``directory`` is replaced, never written through.

        Parameters:
            directory: the target folder (its parent is created if missing).
        """
        check_replaceable(directory)
        embedding: dict[str, Any] | None = None
        if self.embeddings is not None:
            embedding = {
                "model": self.embeddings.model,
                "dimensions": self.embeddings.dimensions,
            }
        manifest = {
            "format": "ragbus-index",
            "version": INDEX_FORMAT_VERSION,
            "fingerprint": self.version,
            "chunking": CHUNKING,
            "embedding": embedding,
            "files": [
                {"name": f.name, "sha256": f.sha256, "passages": f.passages} for f in self.files
            ],
            "passages": [
                {"doc_id": p.doc_id, "title": p.title, "text": p.text} for p in self.passages
            ],
        }
        with staging_folder(directory) as staging:
            self.bm25.dump(staging)
            if self.embeddings is not None:
                save_vectors(staging / VECTORS_NAME, self.embeddings.vectors)
            for written in staging.iterdir():
                os.chmod(written, PRIVATE_MODE, follow_symlinks=False)
            write_private(staging / MANIFEST_NAME, json.dumps(manifest, ensure_ascii=False))
            publish_folder(staging, directory)

    @classmethod
    def load(cls, directory: Path) -> CorpusIndex:
        """The index saved in ``directory`` by :meth:`save`.

        Raises :class:`~ragbus.errors.ConfigurationError` when the folder is not a saved
        index, was saved by an incompatible version, or does not match its manifest.

        Parameters:
            directory: a folder written by :meth:`save`.
        """
        for _ in range(_LOAD_TRIES):
            before = _folder_identity(directory)
            loaded = cls._load_once(directory)
            # The manifest and the other files are read by path: if a new index was
            # swapped in meanwhile they may come from two indexes. Read it again.
            if _folder_identity(directory) == before:
                return loaded
        raise ConfigurationError(f"index {directory} keeps being replaced: try again")

    @classmethod
    def _load_once(cls, directory: Path) -> CorpusIndex:
        manifest_path = directory / MANIFEST_NAME
        manifest = read_manifest(directory)
        try:
            passages = [
                CorpusPassage(doc_id=str(p["doc_id"]), title=str(p["title"]), text=str(p["text"]))
                for p in manifest["passages"]
            ]
            files = tuple(
                IndexedFile(str(f["name"]), str(f["sha256"]), int(f["passages"]))
                for f in manifest.get("files") or []
            )
            embedding = manifest.get("embedding")
            model = str(embedding["model"]) if embedding else None
            dimensions = int(embedding["dimensions"]) if embedding else 0
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"{manifest_path} has invalid entries: {exc!r}") from exc
        fingerprint = corpus_fingerprint(passages)
        if fingerprint != manifest.get("fingerprint"):
            raise ConfigurationError(
                f"index {directory} does not match its fingerprint: rebuild it with `ragbus index`"
            )
        bm25 = SearchIndex.undump(directory, passages, fingerprint)
        embeddings = None
        if model is not None:
            vectors = load_vectors(
                directory / VECTORS_NAME, rows=len(passages), dimensions=dimensions
            )
            embeddings = Embeddings(model, vectors)
        try:
            return cls(bm25, files, embeddings)
        except ValueError as exc:
            raise ConfigurationError(f"{manifest_path}: {exc}: rebuild it") from exc


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of the index saved in ``directory``, checked to be of this version.

    Raises :class:`~ragbus.errors.ConfigurationError` when there is none, it cannot be
    read, or it is of another format version.

    Parameters:
        directory: a saved index.
    """
    manifest_path = directory / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{directory} is not a saved index (no {MANIFEST_NAME})") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read index manifest {manifest_path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != "ragbus-index":
        raise ConfigurationError(f"{manifest_path} is not a ragbus index manifest")
    if manifest.get("version") != INDEX_FORMAT_VERSION:
        raise ConfigurationError(
            f"index {directory} has format version {manifest.get('version')}, "
            f"this ragbus reads version {INDEX_FORMAT_VERSION}: rebuild it with `ragbus index`"
        )
    return manifest


def is_saved_index(path: Path) -> bool:
    """Whether ``path`` is a folder holding a saved index's manifest."""
    return (path / MANIFEST_NAME).is_file()


def _folder_identity(directory: Path) -> tuple[int, int] | None:
    try:
        status = directory.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def check_replaceable(directory: Path) -> None:
    """Refuse (:class:`~ragbus.errors.ConfigurationError`) to replace a file, or a folder
    that is not a saved index (user data).

    Parameters:
        directory: where an index is about to be written.
    """
    try:
        status = os.lstat(directory)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(status.st_mode):
        return  # the link is replaced; what it points to is never touched
    if not stat.S_ISDIR(status.st_mode):
        raise ConfigurationError(f"{directory} is a file, not a ragbus index: choose a folder")
    if any(directory.iterdir()) and not is_saved_index(directory):
        raise ConfigurationError(
            f"{directory} is a folder that is not a ragbus index, so it is not replaced: "
            "choose a new folder for the index"
        )


@functools.cache
def bundled_corpus_index() -> CorpusIndex:
    """The index over the bundled ragbus guide, built once per process (no embeddings)."""
    return CorpusIndex(bundled_index())


def load_index(path: Path | None = None, *, limits: CorpusLimits | None = None) -> CorpusIndex:
    """The corpus index for the ``corpus`` setting.

    Parameters:
        path: ``None`` (default) for the bundled ragbus guide (built once per process);
            a folder saved by :meth:`CorpusIndex.save` (it holds ``ragbus-index.json``)
            to load it; any other folder or file of documents to build a BM25 index over
            (without embeddings: ``ragbus index`` makes those).
        limits: size and count limits of a folder of documents (default
            :class:`~ragbus.retrieval.walk.CorpusLimits`).
    """
    if path is None:
        return bundled_corpus_index()
    if is_saved_index(path):
        return CorpusIndex.load(path)
    return CorpusIndex(SearchIndex.build(load_corpus(path, limits=limits)))
