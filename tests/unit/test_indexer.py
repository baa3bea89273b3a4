"""Keeping a saved index current (``update_index``) with an in-process embedding model:
what is reused, what is embedded again, and what is refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragbus.errors import ConfigurationError
from ragbus.retrieval.indexer import EMBEDDING, READING, update_index
from ragbus.retrieval.saved import MANIFEST_NAME, CorpusIndex
from tests.embedders import WordEmbedder

VOCABULARY = ("ferns", "spores", "zebras", "stripes", "owls", "night")


def notes(folder: Path) -> Path:
    folder.mkdir()
    (folder / "ferns.md").write_text("# Ferns\n\nFerns reproduce with spores.\n")
    (folder / "zebras.md").write_text("# Zebras\n\nZebras have stripes.\n")
    return folder


def embedded(embedder: WordEmbedder) -> list[str]:
    return [text for batch in embedder.batches for text in batch]


async def test_a_folder_that_is_not_an_index_is_refused_before_anything_is_embedded(
    tmp_path: Path,
) -> None:
    source = notes(tmp_path / "notes")
    occupied = tmp_path / "photos"
    occupied.mkdir()
    (occupied / "holiday.jpg").write_bytes(b"\xff\xd8")
    embedder = WordEmbedder(vocabulary=VOCABULARY)

    with pytest.raises(ConfigurationError, match="not a ragbus index"):
        await update_index(source, occupied, embedder=embedder)

    assert embedder.batches == []
    assert [path.name for path in occupied.iterdir()] == ["holiday.jpg"]


async def test_vectors_follow_the_text_not_the_file(tmp_path: Path) -> None:
    source = notes(tmp_path / "notes")
    target = tmp_path / "index"
    embedder = WordEmbedder(vocabulary=VOCABULARY)
    seen: list[tuple[str, int, int]] = []
    first = await update_index(
        source, target, embedder=embedder, progress=lambda *step: seen.append(step)
    )
    assert (first.embedded, first.reused) == (2, 0)
    assert (READING, 2, 2) in seen and (EMBEDDING, 2, 2) in seen

    # a file renamed and another added: only the new text is embedded
    (source / "ferns.md").rename(source / "plants.md")
    (source / "owls.md").write_text("# Owls\n\nOwls hunt at night.\n")
    embedder.batches.clear()
    second = await update_index(source, target, embedder=embedder)

    assert embedded(embedder) == ["Owls\nOwls hunt at night."]
    assert (second.added, second.removed) == (["owls.md", "plants.md"], ["ferns.md"])
    assert (second.embedded, second.reused) == (1, 2)
    loaded = CorpusIndex.load(target)
    assert loaded.embeddings is not None and loaded.embeddings.vectors.shape == (3, 6)
    assert [file.name for file in loaded.files] == ["owls.md", "plants.md", "zebras.md"]


async def test_another_model_embeds_everything_again(tmp_path: Path) -> None:
    source = notes(tmp_path / "notes")
    target = tmp_path / "index"
    await update_index(source, target, embedder=WordEmbedder(vocabulary=VOCABULARY))
    version = CorpusIndex.load(target).version

    other = WordEmbedder(model="local/other", vocabulary=VOCABULARY)
    update = await update_index(source, target, embedder=other)

    assert update.written and (update.embedded, update.reused) == (2, 0)
    assert len(embedded(other)) == 2
    loaded = CorpusIndex.load(target)
    assert loaded.embeddings is not None and loaded.embeddings.model == "local/other"
    assert loaded.version == version  # the content is the same: so is its version
    # and without a model, the index keeps no embeddings
    plain = await update_index(source, target)
    assert plain.written and plain.index.embeddings is None


async def test_an_index_of_another_format_is_rebuilt_and_says_why(tmp_path: Path) -> None:
    source = notes(tmp_path / "notes")
    target = tmp_path / "index"
    await update_index(source, target)
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    manifest["version"] = 1
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))

    update = await update_index(source, target)

    assert update.written and update.added == ["ferns.md", "zebras.md"]
    assert update.rebuilt is not None and "format version 1" in update.rebuilt
    assert len(CorpusIndex.load(target)) == 2
