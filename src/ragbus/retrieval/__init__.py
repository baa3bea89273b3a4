"""Corpus loading and BM25 search: the retrieve stage's data."""

from ragbus.retrieval.corpus import (
    CorpusPassage,
    CorpusRead,
    load_corpus,
    load_documents,
    read_corpus,
)
from ragbus.retrieval.index import SearchIndex, bundled_index, corpus_fingerprint, load_index
from ragbus.retrieval.walk import CorpusLimits, Skipped

__all__ = [
    "CorpusLimits",
    "CorpusPassage",
    "CorpusRead",
    "SearchIndex",
    "Skipped",
    "bundled_index",
    "corpus_fingerprint",
    "load_corpus",
    "load_documents",
    "load_index",
    "read_corpus",
]
