"""A BM25 search index over corpus passages (bm25s), savable to a folder.

A saved index is a folder holding the bm25s index files and a manifest,
``ragbus-index.json``, with the format version, the corpus fingerprint and the
passages themselves, so a worker can load it without the original documents. It holds
corpus text, so its folder is ``0700`` and its files ``0600``; it is written aside and
put in place whole (:mod:`ragbus.retrieval.atomic_dir`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import stat
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, Final

import bm25s

from ragbus.errors import ConfigurationError
from ragbus.files import PRIVATE_MODE, write_private
from ragbus.payloads.rag import Passage
from ragbus.retrieval.atomic_dir import publish_folder, staging_folder
from ragbus.retrieval.corpus import CorpusPassage, load_corpus, load_documents
from ragbus.retrieval.walk import CorpusLimits
from ragbus.text import TERMS_VERSION, terms

# bm25s sets its logger to DEBUG when imported; its index-build messages are noise here.
logging.getLogger("bm25s").setLevel(logging.WARNING)

#: Name of the manifest file that marks a folder as a saved index.
MANIFEST_NAME: Final = "ragbus-index.json"
#: Version of the saved-index layout; a saved index of another version must be rebuilt.
INDEX_FORMAT_VERSION: Final = 1
#: The package whose documents make up the bundled corpus.
BUNDLED_CORPUS_PACKAGE: Final = "ragbus.corpus"
#: Loads of a saved index retried when it was replaced while being read.
_LOAD_TRIES: Final = 3

_BM25_PARAMS: Final[dict[str, Any]] = {"method": "lucene", "k1": 1.5, "b": 0.75}


def corpus_fingerprint(passages: Sequence[CorpusPassage]) -> str:
    """A stable hash of the passages and of how they are indexed (16 hex digits).

    It changes when any passage's id, title or text changes, or when the term rules
    or BM25 parameters change, and never otherwise.
    """
    digest = hashlib.sha256()
    header = {"terms": TERMS_VERSION, "bm25": _BM25_PARAMS, "format": INDEX_FORMAT_VERSION}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for passage in passages:
        record = [passage.doc_id, passage.title, passage.text]
        digest.update(b"\n" + json.dumps(record, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def _indexed_text(passage: CorpusPassage) -> str:
    return f"{passage.title}\n{passage.text}" if passage.title else passage.text


class SearchIndex:
    """BM25 search over a fixed list of passages.

    Build one with :meth:`build` or :meth:`load`, not with the constructor. Searching is
    CPU-bound and fast for small corpora; it is safe to call from several threads.

    Parameters:
        passages: the indexed passages, in index order.
        retriever: the bm25s index over exactly those passages.
        fingerprint: their :func:`corpus_fingerprint`.
    """

    def __init__(
        self, passages: Sequence[CorpusPassage], retriever: bm25s.BM25, fingerprint: str
    ) -> None:
        self._passages = tuple(passages)
        self._retriever = retriever
        self._fingerprint = fingerprint

    @classmethod
    def build(cls, passages: Sequence[CorpusPassage]) -> SearchIndex:
        """An index over ``passages`` (at least one).

        Parameters:
            passages: the passages to index; their ``doc_id`` should be unique.
        """
        if not passages:
            raise ConfigurationError("cannot build a search index over no passages")
        retriever = bm25s.BM25(**_BM25_PARAMS)
        retriever.index([terms(_indexed_text(p)) for p in passages], show_progress=False)
        return cls(passages, retriever, corpus_fingerprint(passages))

    @property
    def fingerprint(self) -> str:
        """A stable hash of the indexed content (see :func:`corpus_fingerprint`)."""
        return self._fingerprint

    @property
    def passages(self) -> tuple[CorpusPassage, ...]:
        """The indexed passages, in index order."""
        return self._passages

    def __len__(self) -> int:
        return len(self._passages)

    def __repr__(self) -> str:
        return f"SearchIndex(passages={len(self)}, fingerprint={self._fingerprint!r})"

    def search(self, query: str, k: int = 4) -> list[Passage]:
        """The at most ``k`` passages that best match ``query``, best first.

        Passages that share no term with the query are left out, so the result may be
        shorter than ``k`` or empty. Scores are BM25 scores rounded to 4 decimals.

        Parameters:
            query: free text.
            k: how many passages to return at most (default 4, at least 1).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        query_terms = terms(query)
        if not query_terms:
            return []
        ids, scores = self._retriever.retrieve(
            [query_terms], k=min(k, len(self._passages)), show_progress=False
        )
        return [
            self._passages[int(i)].with_score(round(float(score), 4))
            for i, score in zip(ids[0], scores[0], strict=True)
            if score > 0
        ]

    def save(self, directory: Path) -> None:
        """Write the index to ``directory``, whole: into a new private folder beside it,
        then moved over it in one step, so readers see the old index or the new one.

        Raises :class:`~ragbus.errors.ConfigurationError` when ``directory`` exists and
        is a file, or a folder that is not a saved index (it is never replaced). A
        symlink at ``directory`` is replaced, never written through.

        Parameters:
            directory: the target folder (its parent is created if missing).
        """
        _check_replaceable(directory)
        manifest = {
            "format": "ragbus-index",
            "version": INDEX_FORMAT_VERSION,
            "fingerprint": self._fingerprint,
            "passages": [
                {"doc_id": p.doc_id, "title": p.title, "text": p.text} for p in self._passages
            ],
        }
        with staging_folder(directory) as staging:
            self._retriever.save(str(staging), show_progress=False)
            for written in staging.iterdir():
                os.chmod(written, PRIVATE_MODE, follow_symlinks=False)
            write_private(staging / MANIFEST_NAME, json.dumps(manifest, ensure_ascii=False))
            publish_folder(staging, directory)

    @classmethod
    def load(cls, directory: Path) -> SearchIndex:
        """The index saved in ``directory`` by :meth:`save`.

        Raises :class:`~ragbus.errors.ConfigurationError` when the folder is not a saved
        index, was saved by an incompatible version, or does not match its manifest.

        Parameters:
            directory: a folder written by :meth:`save`.
        """
        for _ in range(_LOAD_TRIES):
            before = _folder_identity(directory)
            loaded = cls._load_once(directory)
            # The manifest and the bm25s files are read by path: if a new index was
            # swapped in meanwhile they may come from two indexes. Read it again.
            if _folder_identity(directory) == before:
                return loaded
        raise ConfigurationError(f"index {directory} keeps being replaced: try again")

    @classmethod
    def _load_once(cls, directory: Path) -> SearchIndex:
        manifest_path = directory / MANIFEST_NAME
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigurationError(
                f"{directory} is not a saved index (no {MANIFEST_NAME})"
            ) from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"cannot read index manifest {manifest_path}: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != "ragbus-index":
            raise ConfigurationError(f"{manifest_path} is not a ragbus index manifest")
        if manifest.get("version") != INDEX_FORMAT_VERSION:
            raise ConfigurationError(
                f"index {directory} has format version {manifest.get('version')}, "
                f"this ragbus reads version {INDEX_FORMAT_VERSION}: rebuild it with `ragbus index`"
            )
        try:
            passages = [
                CorpusPassage(doc_id=str(p["doc_id"]), title=str(p["title"]), text=str(p["text"]))
                for p in manifest["passages"]
            ]
        except (KeyError, TypeError) as exc:
            raise ConfigurationError(f"{manifest_path} has invalid passages: {exc!r}") from exc
        fingerprint = corpus_fingerprint(passages)
        if fingerprint != manifest.get("fingerprint"):
            raise ConfigurationError(
                f"index {directory} does not match its fingerprint: rebuild it with `ragbus index`"
            )
        try:
            retriever = bm25s.BM25.load(str(directory), show_progress=False)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot load the BM25 index files in {directory}: {exc}"
            ) from exc
        if retriever.scores.get("num_docs") != len(passages):
            raise ConfigurationError(
                f"index {directory}: the BM25 files hold {retriever.scores.get('num_docs')} "
                f"documents, the manifest {len(passages)}: rebuild it with `ragbus index`"
            )
        return cls(passages, retriever, fingerprint)


def _folder_identity(directory: Path) -> tuple[int, int] | None:
    try:
        status = directory.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _check_replaceable(directory: Path) -> None:
    """Refuse to replace a file, or a folder that is not a saved index (user data)."""
    try:
        status = os.lstat(directory)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(status.st_mode):
        return  # the link is replaced; what it points to is never touched
    if not stat.S_ISDIR(status.st_mode):
        raise ConfigurationError(f"{directory} is a file, not a ragbus index: choose a folder")
    if any(directory.iterdir()) and not (directory / MANIFEST_NAME).is_file():
        raise ConfigurationError(
            f"{directory} is a folder that is not a ragbus index, so it is not replaced: "
            "choose a new folder for the index"
        )


@functools.cache
def bundled_index() -> SearchIndex:
    """The index over the corpus shipped in ``ragbus.corpus``, built once per process."""
    return SearchIndex.build(load_documents(files(BUNDLED_CORPUS_PACKAGE)))


def load_index(path: Path | None = None, *, limits: CorpusLimits | None = None) -> SearchIndex:
    """The search index for the ``corpus`` setting.

    Parameters:
        path: ``None`` (default) for the bundled ragbus guide (built once per process);
            a folder saved by :meth:`SearchIndex.save` (it holds ``ragbus-index.json``)
            to load it; any other folder or file of documents to build an index over.
        limits: size and count limits of a folder of documents (default
            :class:`~ragbus.retrieval.walk.CorpusLimits`).
    """
    if path is None:
        return bundled_index()
    if (path / MANIFEST_NAME).is_file():
        return SearchIndex.load(path)
    return SearchIndex.build(load_corpus(path, limits=limits))
