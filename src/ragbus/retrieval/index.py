"""A BM25 search index over corpus passages (bm25s), in memory.

A saved index (a folder: these BM25 files, the passages, their embeddings) is
:mod:`ragbus.retrieval.saved`'s.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, Final

import bm25s

from ragbus.errors import ConfigurationError
from ragbus.payloads.rag import Passage
from ragbus.retrieval.corpus import CorpusPassage, load_documents
from ragbus.text import TERMS_VERSION, terms

# bm25s sets its logger to DEBUG when imported; its index-build messages are noise here.
logging.getLogger("bm25s").setLevel(logging.WARNING)

#: The package whose documents make up the bundled corpus.
BUNDLED_CORPUS_PACKAGE: Final = "ragbus.corpus"

_BM25_PARAMS: Final[dict[str, Any]] = {"method": "lucene", "k1": 1.5, "b": 0.75}


def corpus_fingerprint(passages: Sequence[CorpusPassage]) -> str:
    """A stable hash of the passages and of how they are indexed (16 hex digits).

    It changes when any passage's id, title or text changes, or when the term rules
    or BM25 parameters change, and never otherwise.
    """
    digest = hashlib.sha256()
    header = {"terms": TERMS_VERSION, "bm25": _BM25_PARAMS}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for passage in passages:
        record = [passage.doc_id, passage.title, passage.text]
        digest.update(b"\n" + json.dumps(record, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def indexed_text(passage: CorpusPassage) -> str:
    """What is searched of ``passage``, by terms and by embedding: its title and text."""
    return f"{passage.title}\n{passage.text}" if passage.title else passage.text


class SearchIndex:
    """BM25 search over a fixed list of passages.

    Build one with :meth:`build` or :meth:`undump`, not with the constructor. Searching is
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
        retriever.index([terms(indexed_text(p)) for p in passages], show_progress=False)
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

    def dump(self, directory: Path) -> None:
        """Write the bm25s files of this index into the folder ``directory`` (see
        :mod:`ragbus.retrieval.saved` for a whole saved index).

        Parameters:
            directory: an existing, private folder.
        """
        self._retriever.save(str(directory), show_progress=False)

    @classmethod
    def undump(
        cls, directory: Path, passages: Sequence[CorpusPassage], fingerprint: str
    ) -> SearchIndex:
        """The index whose bm25s files :meth:`dump` wrote to ``directory``, over
        ``passages``.

        Raises :class:`~ragbus.errors.ConfigurationError` when the files are missing,
        unreadable or index another number of passages.

        Parameters:
            directory: the folder.
            passages: the passages the files index, in index order.
            fingerprint: their :func:`corpus_fingerprint`.
        """
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


@functools.cache
def bundled_index() -> SearchIndex:
    """The index over the corpus shipped in ``ragbus.corpus``, built once per process."""
    return SearchIndex.build(load_documents(files(BUNDLED_CORPUS_PACKAGE)))
