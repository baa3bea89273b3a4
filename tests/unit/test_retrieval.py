"""Corpus loading, chunking and the BM25 search index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragbus.errors import ConfigurationError
from ragbus.payloads.rag import Passage
from ragbus.retrieval import (
    CorpusPassage,
    SearchIndex,
    bundled_index,
    load_corpus,
    load_index,
)
from ragbus.retrieval.chunking import split_document
from ragbus.retrieval.saved import MANIFEST_NAME, CorpusIndex
from tests.samples import write_corpus


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "docs")


def by_id(passages: list[CorpusPassage]) -> dict[str, CorpusPassage]:
    return {passage.doc_id: passage for passage in passages}


# --- loading -----------------------------------------------------------------------


def test_markdown_is_split_at_headings_with_the_heading_as_title(corpus: Path) -> None:
    passages = by_id(load_corpus(corpus))

    assert passages["guide/retries.md#0"].title == "Retries"
    assert passages["guide/retries.md#0"].text.startswith("ragbus retries a transient failure")
    assert passages["guide/retries.md#1"].title == "Dead letters"
    assert "`ragbus dlq replay`" in passages["guide/retries.md#1"].text
    assert passages["guide/retries.md#2"].title == "Breakers"
    assert "guide/retries.md#3" not in passages


def test_text_files_split_by_paragraph_packing_with_the_file_name_as_title(corpus: Path) -> None:
    passages = by_id(load_corpus(corpus))

    garden = passages["garden.txt#0"]
    assert garden.title == "garden"
    # Two short paragraphs are packed into one passage.
    assert "six to eight hours" in garden.text
    assert "twice a week" in garden.text
    assert "garden.txt#1" not in passages


def test_jsonl_lines_become_passages_with_their_id_or_file_and_line(corpus: Path) -> None:
    passages = by_id(load_corpus(corpus))

    assert passages["faq-cache"] == CorpusPassage(
        doc_id="faq-cache", title="Caching", text="The cache key holds the stage fingerprint."
    )
    second = passages["faq.jsonl#2"]
    assert second.title == "faq"
    assert second.text.startswith("Workers share the cache")


def test_hidden_folders_and_other_files_are_skipped(corpus: Path) -> None:
    passages = load_corpus(corpus)

    assert len(passages) == 6
    assert not any("Secret" in p.title or "secret" in p.doc_id for p in passages)
    assert not any("script" in p.doc_id for p in passages)


def test_passages_are_packed_between_80_and_200_words() -> None:
    paragraph = " ".join(f"word{i}." for i in range(50))
    document = "# Long\n\n" + "\n\n".join([paragraph] * 9) + "\n\n# Short\n\nTiny section.\n"

    chunks = split_document(document, default_title="doc")

    sizes = [len(chunk.text.split()) for chunk in chunks if chunk.title == "Long"]
    assert sum(sizes) == 450
    assert all(size <= 200 for size in sizes)
    assert all(size >= 80 for size in sizes)
    assert [chunk.title for chunk in chunks][-1] == "Short"
    assert chunks[-1].text == "Tiny section."


def test_an_overlong_paragraph_is_cut_between_sentences() -> None:
    sentence = "This sentence has exactly eight words in it."
    paragraph = " ".join([sentence] * 60)  # 480 words

    chunks = split_document(paragraph, default_title="doc", markdown=False)

    assert len(chunks) >= 3
    for chunk in chunks:
        assert len(chunk.text.split()) <= 200
        assert chunk.text.endswith("in it.")


def test_a_heading_inside_a_code_fence_is_not_a_heading() -> None:
    document = "# Real\n\nSome text here.\n\n```bash\n# a shell comment\nls\n```\n"

    chunks = split_document(document, default_title="doc")

    assert [chunk.title for chunk in chunks] == ["Real"]
    assert "# a shell comment" in chunks[0].text


def test_a_single_file_can_be_the_corpus(corpus: Path) -> None:
    passages = load_corpus(corpus / "garden.txt")

    assert [p.doc_id for p in passages] == ["garden.txt#0"]


def test_a_missing_path_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_corpus(tmp_path / "nowhere")


def test_a_folder_without_documents_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "notes.py").write_text("x = 1\n")

    with pytest.raises(ConfigurationError, match=r"no documents \(\.md, \.txt, \.jsonl\)"):
        load_corpus(tmp_path)


def test_documents_without_text_are_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "empty.md").write_text("\n\n")

    with pytest.raises(ConfigurationError, match="contain no text"):
        load_corpus(tmp_path)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"title": "no text"}', "missing or empty 'text'"),
        ('{"text": 42}', "'text' must be a string"),
    ],
)
def test_a_bad_jsonl_line_names_the_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    good = json.dumps({"text": "A fine first line."})
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.jsonl").write_text(f"{good}\n\n{line}\n")

    with pytest.raises(ConfigurationError) as caught:
        load_corpus(tmp_path)

    assert "sub/data.jsonl, line 3" in str(caught.value)
    assert reason in str(caught.value)


def test_duplicate_ids_are_a_configuration_error(tmp_path: Path) -> None:
    line = json.dumps({"id": "same", "text": "Some text."})
    (tmp_path / "a.jsonl").write_text(f"{line}\n{line}\n")

    with pytest.raises(ConfigurationError, match="'same'"):
        load_corpus(tmp_path)


# --- search ------------------------------------------------------------------------


def test_search_ranks_the_relevant_passage_first(corpus: Path) -> None:
    index = SearchIndex.build(load_corpus(corpus))

    results = index.search("How do I replay dead letters?", k=3)

    assert results[0].doc_id == "guide/retries.md#1"
    assert all(isinstance(result, Passage) for result in results)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert results[0].score > 0

    tomatoes = index.search("how much sunlight do tomatoes need", k=1)
    assert [r.doc_id for r in tomatoes] == ["garden.txt#0"]
    assert tomatoes[0].title == "garden"
    assert "six to eight hours" in tomatoes[0].text


def test_search_matches_word_forms_and_titles(corpus: Path) -> None:
    index = SearchIndex.build(load_corpus(corpus))

    # "breaker" is stemmed like "Breakers" (the title) and "opened" like "opens".
    assert index.search("breaker opened", k=1)[0].doc_id == "guide/retries.md#2"
    assert index.search("caching", k=1)[0].doc_id == "faq-cache"


def test_search_leaves_out_passages_without_a_shared_term(corpus: Path) -> None:
    index = SearchIndex.build(load_corpus(corpus))

    assert index.search("zebra giraffe", k=4) == []
    assert index.search("what is the", k=4) == []  # stopwords only
    assert len(index.search("ragbus cache", k=50)) <= len(index)
    assert len(index.search("ragbus cache dead letters breaker", k=2)) == 2
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.search("cache", k=0)


def test_an_empty_passage_list_cannot_be_indexed() -> None:
    with pytest.raises(ConfigurationError):
        SearchIndex.build([])


# --- persistence and fingerprint ---------------------------------------------------


def test_save_and_load_give_equal_results(corpus: Path, tmp_path: Path) -> None:
    index = SearchIndex.build(load_corpus(corpus))
    target = tmp_path / "saved"
    CorpusIndex(index).save(target)

    loaded = CorpusIndex.load(target).bm25

    assert (target / MANIFEST_NAME).is_file()
    assert len(loaded) == len(index)
    assert loaded.fingerprint == index.fingerprint
    assert loaded.passages == index.passages
    for query in ["replay dead letters", "tomato sunlight", "cache fingerprint", "breaker"]:
        assert loaded.search(query, k=3) == index.search(query, k=3)


def test_load_index_loads_a_saved_index_or_builds_from_documents(
    corpus: Path, tmp_path: Path
) -> None:
    built = load_index(corpus)
    built.save(tmp_path / "saved")
    # The saved index no longer depends on the documents.
    (corpus / "garden.txt").unlink()

    loaded = load_index(tmp_path / "saved")

    assert loaded.version == built.version
    assert loaded.bm25.search("tomatoes", k=1)[0].doc_id == "garden.txt#0"
    assert load_index(corpus).version != built.version
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_index(tmp_path / "missing")


def test_loading_an_index_of_another_version_fails_clearly(corpus: Path, tmp_path: Path) -> None:
    target = tmp_path / "saved"
    CorpusIndex(SearchIndex.build(load_corpus(corpus))).save(target)
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    manifest["version"] = 999
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))

    with pytest.raises(ConfigurationError, match="format version 999"):
        CorpusIndex.load(target)


def test_a_tampered_manifest_fails_its_fingerprint_check(corpus: Path, tmp_path: Path) -> None:
    target = tmp_path / "saved"
    CorpusIndex(SearchIndex.build(load_corpus(corpus))).save(target)
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    manifest["passages"][0]["text"] = "changed"
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))

    with pytest.raises(ConfigurationError, match="fingerprint"):
        CorpusIndex.load(target)


def test_fingerprint_is_stable_and_content_sensitive(corpus: Path) -> None:
    passages = load_corpus(corpus)
    first = SearchIndex.build(passages).fingerprint

    assert SearchIndex.build(load_corpus(corpus)).fingerprint == first
    assert len(first) == 16
    assert int(first, 16) >= 0

    edited = (corpus / "garden.txt").read_text().replace("twice", "three times")
    (corpus / "garden.txt").write_text(edited)
    assert SearchIndex.build(load_corpus(corpus)).fingerprint != first

    renamed = [CorpusPassage("other-id", p.title, p.text) for p in passages[:1]] + passages[1:]
    assert SearchIndex.build(renamed).fingerprint != first


def test_the_bundled_corpus_is_indexed_once_per_process() -> None:
    index = load_index(None)

    assert index is load_index(None)
    assert index.bm25 is bundled_index()
    assert len(index) > 0
    assert all(p.doc_id.split("#")[0].endswith((".md", ".txt", ".jsonl")) for p in index.passages)
