"""Recall@k of BM25, dense and hybrid retrieval on the labelled set of the tests.

    .venv/bin/python bench/retrieval_recall.py

Dense and hybrid embed with the tests' stand-in embedding server (``tests/lm_server.py``,
started here on a free port of 127.0.0.1): deterministic vectors of hashed word,
concept and trigram features, meaningful enough to find paraphrases, not a trained
model. Prints a Markdown table, the one in docs/retrieval.md (a test checks they agree).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from ragbus.config import Settings
from ragbus.retrieval.embedder import Embedder
from ragbus_bench.recall import DEPTHS, index_labelled, questions, recall_by_kind

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the stand-in lives in tests/
from tests.lm_server import start_lm_server


async def main() -> None:
    server = start_lm_server()
    try:
        settings = Settings(
            embed_model="openai/stand-in-embeddings",
            embed_api_base=server.api_base,
            embed_api_key="not-needed",
        )
        embedder = Embedder.from_settings(settings)
        assert embedder is not None
        asked = questions()
        with tempfile.TemporaryDirectory() as folder:
            index = await index_labelled(Path(folder) / "index", embedder)
            recall = await recall_by_kind(settings, index, asked)
    finally:
        server.stop()
    print(f"{len(index)} passages, {len(asked)} questions\n")
    print("| retriever | " + " | ".join(f"recall@{k}" for k in DEPTHS) + " |")
    print("|---" * (len(DEPTHS) + 1) + "|")
    for kind, by_depth in recall.items():
        print(f"| {kind} | " + " | ".join(f"{by_depth[k]:.3f}" for k in DEPTHS) + " |")


if __name__ == "__main__":
    asyncio.run(main())
