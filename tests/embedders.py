"""An embedding model that runs in the test process, for tests that need no HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ragbus.retrieval.embedder import Embedder
from ragbus.retrieval.vectors import Matrix, normalized


@dataclass(frozen=True)
class WordEmbedder(Embedder):
    """Embeds in process: one dimension per word of ``vocabulary``, so a text is near
    the texts that share its words. Records every batch it is called with in
    ``batches``; while ``failures`` holds an exception, every call raises it.

    Parameters:
        vocabulary: the words it knows.
    """

    model: str = "local/words"
    batch_size: int = 8
    vocabulary: tuple[str, ...] = ()
    batches: list[list[str]] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)

    async def embed(
        self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None
    ) -> Matrix:
        self.batches.append(list(texts))
        await asyncio.sleep(0.01)  # a model takes a while: others arrive meanwhile
        if self.failures:
            raise self.failures[0]
        columns = {word: column for column, word in enumerate(self.vocabulary)}
        vectors = np.zeros((len(texts), len(self.vocabulary)), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace("?", " ").replace(".", " ").split():
                if word in columns:
                    vectors[row, columns[word]] += 1
        if progress is not None:
            progress(len(texts))
        return normalized(vectors)
