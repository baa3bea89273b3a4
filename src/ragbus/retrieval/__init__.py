"""Corpus loading and BM25 search: the retrieve stage's data."""

from ragbus.retrieval.corpus import CorpusPassage, load_corpus, load_documents
from ragbus.retrieval.index import SearchIndex, bundled_index, corpus_fingerprint, load_index

__all__ = [
    "CorpusPassage",
    "SearchIndex",
    "bundled_index",
    "corpus_fingerprint",
    "load_corpus",
    "load_documents",
    "load_index",
]
