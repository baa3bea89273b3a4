"""Building the retriever the settings name (``RAGBUS_RETRIEVER``)."""

from __future__ import annotations

from ragbus.config import RetrieverKind, Settings
from ragbus.errors import ConfigurationError
from ragbus.retrieval.bm25 import Bm25Retriever
from ragbus.retrieval.dense import DenseRetriever
from ragbus.retrieval.embedder import Embedder, QueryEmbeddings
from ragbus.retrieval.hybrid import HybridRetriever
from ragbus.retrieval.retriever import Retriever
from ragbus.retrieval.saved import CorpusIndex, load_index
from ragbus.retrieval.walk import CorpusLimits


def build_retriever(settings: Settings, index: CorpusIndex | None = None) -> Retriever:
    """The retriever of ``settings.retriever`` over the corpus of ``settings.corpus``.

    ``bm25`` searches any corpus: the bundled guide, a folder of documents or a saved
    index. ``dense`` and ``hybrid`` search the embeddings of an index that ``ragbus
    index`` built with ``RAGBUS_EMBED_MODEL`` (workers never embed a whole corpus when
    they start), and embed each question with that same model. Raises
    :class:`~ragbus.errors.ConfigurationError` saying what to set or run otherwise.

    Parameters:
        settings: ``retriever``, ``corpus`` (and its limits), ``embed_*``.
        index: the corpus index to search (default: loaded from ``settings.corpus``).
    """
    kind = settings.retriever
    embedder = Embedder.from_settings(settings)
    if kind != RetrieverKind.BM25 and embedder is None:
        raise ConfigurationError(
            f"RAGBUS_RETRIEVER={kind.value} embeds questions: set RAGBUS_EMBED_MODEL to the "
            "model the index was built with (e.g. openai/text-embedding-3-small)"
        )
    if index is None:
        index = load_index(settings.corpus, limits=CorpusLimits.from_settings(settings))
    bm25 = Bm25Retriever(index.bm25)
    if kind == RetrieverKind.BM25:
        return bm25
    assert embedder is not None
    if index.embeddings is None:
        where = settings.corpus or "the bundled guide"
        raise ConfigurationError(
            f"RAGBUS_RETRIEVER={kind.value} searches embeddings, and {where} has none: run "
            f"`ragbus index PATH` with RAGBUS_EMBED_MODEL={embedder.model} and set "
            "RAGBUS_CORPUS to the index it writes"
        )
    dense = DenseRetriever(
        index.passages, index.embeddings, QueryEmbeddings(embedder), index.version
    )
    if kind == RetrieverKind.DENSE:
        return dense
    return HybridRetriever(bm25, dense)
