"""Dense retrieval: the question's embedding against the passages' embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ragbus.errors import ConfigurationError
from ragbus.payloads.rag import Passage
from ragbus.retrieval.corpus import CorpusPassage
from ragbus.retrieval.embedder import QueryEmbeddings
from ragbus.retrieval.offload import off_loop
from ragbus.retrieval.saved import Embeddings
from ragbus.retrieval.vectors import Matrix, top_k

#: This retriever's kind, in settings and fingerprints.
DENSE_KIND: Final = "dense"
#: The dependency a dense search calls: the embedding model, for the question.
EMBEDDER_DEPENDENCY: Final = "embedder"
#: Decimals kept of a similarity score.
_SCORE_DECIMALS: Final = 4


class DenseRetriever:
    """Embeds the question with the model the passages were embedded with, then finds
    the passages whose vectors are most similar (cosine; exact search with NumPy in the
    search threads, :mod:`ragbus.retrieval.offload`).

    Passages whose similarity is not above zero are left out. Scores are cosine
    similarities.

    Parameters:
        passages: the passages, in index order.
        embeddings: their vectors and model.
        queries: embeds questions; its model must be the passages' model.
        corpus_version: the corpus fingerprint (a part of this retriever's).
        off_loop: search in the search threads (default true); false searches in the
            calling task (kept to measure the difference).
    """

    kind: Final = DENSE_KIND
    dependency: Final = EMBEDDER_DEPENDENCY

    def __init__(
        self,
        passages: Sequence[CorpusPassage],
        embeddings: Embeddings,
        queries: QueryEmbeddings,
        corpus_version: str,
        *,
        off_loop: bool = True,
    ) -> None:
        if embeddings.vectors.shape[0] != len(passages):
            raise ValueError("there must be one vector per passage")
        model = queries.embedder.model
        if model != embeddings.model:
            raise ConfigurationError(
                f"the index was embedded with {embeddings.model}, and RAGBUS_EMBED_MODEL is "
                f"{model}: set it to {embeddings.model}, or run `ragbus index` again to "
                f"embed the corpus with {model}"
            )
        self.passages = tuple(passages)
        self.embeddings = embeddings
        self.queries = queries
        self.corpus_version = corpus_version
        self.off_loop = off_loop

    @property
    def model(self) -> str:
        """The embedding model."""
        return self.embeddings.model

    @property
    def fingerprint(self) -> str:
        """``dense:``, the embedding model and the corpus version."""
        return f"{self.kind}:{self.model}:{self.corpus_version}"

    @property
    def size(self) -> int:
        """How many passages it searches."""
        return len(self.passages)

    async def search(self, query: str, k: int) -> list[Passage]:
        """The at most ``k`` passages most similar to ``query``, best first.

        Raises what the embedding call raises (see
        :meth:`~ragbus.retrieval.embedder.Embedder.embed`).

        Parameters:
            query: free text.
            k: how many passages to return at most (at least 1).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        vector = await self.queries.embed(query)
        if vector.shape[1] != self.embeddings.dimensions:
            raise ConfigurationError(
                f"{self.model} returned vectors of {vector.shape[1]} dimensions, the index "
                f"holds {self.embeddings.dimensions}: run `ragbus index` again"
            )
        if self.off_loop:
            return await off_loop(self._nearest, vector, k)
        return self._nearest(vector, k)

    def _nearest(self, vector: Matrix, k: int) -> list[Passage]:
        (found,) = top_k(self.embeddings.vectors, vector, k)
        return [
            self.passages[row].with_score(round(similarity, _SCORE_DECIMALS))
            for row, similarity in found
            if similarity > 0
        ]
