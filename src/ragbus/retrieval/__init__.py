"""The retrieve stage's data and search: corpus loading, saved indexes, and the
retrievers (BM25, dense, hybrid) behind one interface."""

from ragbus.retrieval.corpus import (
    CorpusPassage,
    CorpusRead,
    load_corpus,
    load_documents,
    read_corpus,
)
from ragbus.retrieval.index import SearchIndex, bundled_index, corpus_fingerprint
from ragbus.retrieval.retriever import Retriever
from ragbus.retrieval.saved import CorpusIndex, Embeddings, load_index
from ragbus.retrieval.walk import CorpusLimits, Skipped

__all__ = [
    "CorpusIndex",
    "CorpusLimits",
    "CorpusPassage",
    "CorpusRead",
    "Embeddings",
    "Retriever",
    "SearchIndex",
    "Skipped",
    "bundled_index",
    "corpus_fingerprint",
    "load_corpus",
    "load_documents",
    "load_index",
    "read_corpus",
]
