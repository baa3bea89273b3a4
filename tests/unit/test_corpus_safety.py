"""A corpus folder is untrusted: indexing never leaves it, never loops, reads only
regular files within limits, and writes the index whole, private, and never through a
planted symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import bm25s
import pytest

from ragbus.errors import ConfigurationError
from ragbus.retrieval import CorpusLimits, SearchIndex, atomic_dir, load_corpus, read_corpus
from ragbus.retrieval.saved import MANIFEST_NAME, CorpusIndex

pytestmark = pytest.mark.timeout(30)

SECRET = "AWS_SECRET_ACCESS_KEY=do-not-index-me"


def doc(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    doc(root / "guide.md", "# Guide\n\nTomatoes need sunlight to ripen.\n")
    doc(root / "notes" / "water.txt", "Water the plants twice a week.\n")
    return root


def texts(passages: list[object]) -> str:
    return "\n".join(str(passage) for passage in passages)


# --- never leave the corpus folder ---------------------------------------------------


def test_a_symlink_to_the_process_environment_is_not_indexed(corpus: Path) -> None:
    (corpus / "env.txt").symlink_to("/proc/self/environ")

    read = read_corpus(corpus)

    names = {passage.doc_id.partition("#")[0] for passage in read.passages}
    assert names == {"guide.md", "notes/water.txt"}
    assert [(skip.name, skip.reason) for skip in read.skipped] == [
        ("env.txt", "a symlink that leads outside the corpus folder")
    ]
    assert "PATH=" not in texts(list(read.passages))


def test_a_symlink_to_a_secret_file_outside_is_not_indexed(corpus: Path, tmp_path: Path) -> None:
    secret = doc(tmp_path / "home" / ".aws" / "credentials.txt", SECRET)
    (corpus / "creds.txt").symlink_to(secret)
    (corpus / "home").symlink_to(secret.parent.parent, target_is_directory=True)
    (corpus / "up.md").symlink_to("../home/.aws/credentials.txt")

    passages = load_corpus(corpus)

    assert SECRET not in texts(passages)
    assert len(passages) == 2


def test_a_loop_symlink_does_not_multiply_documents(corpus: Path) -> None:
    plain = load_corpus(corpus)
    (corpus / "loop").symlink_to(".", target_is_directory=True)

    read = read_corpus(corpus)

    assert [p.doc_id for p in read.passages] == [p.doc_id for p in plain]
    assert [skip.name for skip in read.skipped] == ["loop"]


def test_two_loops_finish_with_each_document_once(corpus: Path) -> None:
    plain = load_corpus(corpus)
    (corpus / "a").symlink_to(".", target_is_directory=True)
    (corpus / "notes" / "b").symlink_to("..", target_is_directory=True)

    read = read_corpus(corpus)

    assert [p.doc_id for p in read.passages] == [p.doc_id for p in plain]
    assert sorted(skip.name for skip in read.skipped) == ["a", "notes/b"]


def test_a_symlink_inside_the_folder_is_followed_once(corpus: Path) -> None:
    """A link to a document in a hidden folder is indexed under the link's name; a link
    to a document already indexed adds nothing."""
    doc(corpus / ".drafts" / "soil.md", "# Soil\n\nLoam holds water well.\n")
    (corpus / "soil.md").symlink_to(".drafts/soil.md")
    (corpus / "again.md").symlink_to("guide.md")

    read = read_corpus(corpus)

    ids = [p.doc_id for p in read.passages]
    assert ids == ["guide.md#0", "notes/water.txt#0", "soil.md#0"]
    assert [(skip.name, skip.reason) for skip in read.skipped] == [
        ("again.md", "the same file as guide.md")
    ]


def test_a_broken_symlink_is_skipped(corpus: Path) -> None:
    (corpus / "gone.md").symlink_to("nowhere.md")

    read = read_corpus(corpus)

    assert len(read.passages) == 2
    assert [skip.name for skip in read.skipped] == ["gone.md"]


def test_a_fifo_named_like_a_document_is_not_read(corpus: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes: it must be skipped."""
    os.mkfifo(corpus / "pipe.txt")

    read = read_corpus(corpus)

    assert len(read.passages) == 2
    assert [(skip.name, skip.reason) for skip in read.skipped] == [
        ("pipe.txt", "not a regular file")
    ]


def test_the_corpus_root_may_itself_be_a_symlink(corpus: Path, tmp_path: Path) -> None:
    link = tmp_path / "link-to-docs"
    link.symlink_to(corpus, target_is_directory=True)

    assert [p.doc_id for p in load_corpus(link)] == [p.doc_id for p in load_corpus(corpus)]


# --- limits --------------------------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused_by_name(corpus: Path) -> None:
    doc(corpus / "notes" / "huge.md", "word " * 400)

    with pytest.raises(ConfigurationError) as caught:
        load_corpus(corpus, limits=CorpusLimits(max_file_bytes=1000))

    message = str(caught.value)
    assert "notes/huge.md" in message
    assert "2000 bytes" in message and "1000" in message
    assert "RAGBUS_CORPUS_MAX_FILE_BYTES" in message


def test_too_many_files_are_refused_naming_the_first_one_over(corpus: Path) -> None:
    for number in range(5):
        doc(corpus / "many" / f"{number}.txt", f"Note number {number}.\n")

    with pytest.raises(ConfigurationError) as caught:
        load_corpus(corpus, limits=CorpusLimits(max_files=4))

    message = str(caught.value)
    assert "more than 4 documents" in message
    assert "many/3.txt" in message  # after guide.md, many/0.txt, many/1.txt, many/2.txt
    assert "RAGBUS_CORPUS_MAX_FILES" in message


def test_skipped_entries_do_not_count_towards_the_file_limit(corpus: Path) -> None:
    (corpus / "loop").symlink_to(".", target_is_directory=True)
    (corpus / "env.txt").symlink_to("/proc/self/environ")

    assert len(load_corpus(corpus, limits=CorpusLimits(max_files=2))) == 2


# --- writing the index ---------------------------------------------------------------


def index_of(corpus: Path) -> CorpusIndex:
    return CorpusIndex(SearchIndex.build(load_corpus(corpus)))


def test_the_index_writer_replaces_a_planted_symlink_instead_of_writing_through_it(
    corpus: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    target = corpus / ".ragbus-index"
    target.symlink_to(victim, target_is_directory=True)

    index_of(corpus).save(target)

    assert sorted(path.name for path in victim.iterdir()) == ["keep.txt"]
    assert (victim / "keep.txt").read_text() == "precious"
    assert not target.is_symlink() and (target / MANIFEST_NAME).is_file()
    assert len(CorpusIndex.load(target)) == 2


def test_a_symlink_planted_inside_an_existing_index_is_not_written_through(
    corpus: Path, tmp_path: Path
) -> None:
    target = corpus / ".ragbus-index"
    index_of(corpus).save(target)
    victim = doc(tmp_path / "bashrc.txt", "export PATH=/usr/bin\n")
    for name in (MANIFEST_NAME, "params.index.json", "vocab.index.json"):
        (target / name).unlink()
        (target / name).symlink_to(victim)

    index_of(corpus).save(target)

    assert victim.read_text() == "export PATH=/usr/bin\n"
    assert not any(path.is_symlink() for path in target.iterdir())
    assert len(CorpusIndex.load(target)) == 2


def test_index_files_are_private(corpus: Path, tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        target = tmp_path / "out" / "index"
        index_of(corpus).save(target)
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in target.iterdir()}
    assert MANIFEST_NAME in modes
    assert set(modes.values()) == {0o600}, modes


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-aside"])
def test_replacing_an_index_leaves_no_temporary_folder_behind(
    corpus: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    if not exchange:  # a system without renameat2(RENAME_EXCHANGE)
        monkeypatch.setattr(atomic_dir, "_exchange", lambda first, second: False)
    target = corpus / ".ragbus-index"
    index_of(corpus).save(target)
    doc(corpus / "more.md", "# More\n\nCompost feeds the soil.\n")
    index_of(corpus).save(target)

    assert len(CorpusIndex.load(target)) == 3
    assert sorted(path.name for path in corpus.iterdir() if path.name.startswith(".")) == [
        ".ragbus-index"
    ]


def test_a_folder_that_is_not_an_index_is_never_replaced(corpus: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a ragbus index"):
        index_of(corpus).save(corpus / "notes")
    assert (corpus / "notes" / "water.txt").is_file()


def test_a_failed_write_leaves_the_previous_index(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = corpus / ".ragbus-index"
    index_of(corpus).save(target)
    before = {path.name: path.read_bytes() for path in target.iterdir()}
    index = index_of(corpus)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bm25s.BM25, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        index.save(target)

    assert {path.name: path.read_bytes() for path in target.iterdir()} == before
    assert sorted(path.name for path in corpus.iterdir() if path.name.startswith(".")) == [
        ".ragbus-index"
    ]


def test_reading_reports_its_progress(corpus: Path) -> None:
    seen: list[tuple[int, int]] = []

    read_corpus(corpus, progress=lambda done, total: seen.append((done, total)))

    assert seen == [(1, 2), (2, 2)]
