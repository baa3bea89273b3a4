"""Dense and hybrid retrieval against an OpenAI-compatible embedding server over HTTP
(the stand-in of :mod:`tests.lm_server`), and ``ragbus index`` keeping an index current,
run as a user runs it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from ragbus.config import Settings
from ragbus.retrieval.embedder import Embedder
from ragbus.retrieval.saved import MANIFEST_NAME
from ragbus.runtime.classify import FailureClass, classify, retry_after
from ragbus_bench.recall import DEPTHS, index_labelled, questions, recall_by_kind
from tests.e2e.test_cli_environment import ragbus as run_ragbus
from tests.lm_server import FakeLMServer

pytestmark = pytest.mark.timeout(180)

MODEL = "openai/stand-in-embeddings"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "retrieval.md"


def embed_env(lm: FakeLMServer, **more: str) -> dict[str, str]:
    return {
        "RAGBUS_EMBED_MODEL": MODEL,
        "RAGBUS_EMBED_API_BASE": lm.api_base,
        "RAGBUS_EMBED_API_KEY": "sk-test-key",
        "RAGBUS_EMBED_BATCH_SIZE": "32",
        **more,
    }


def ragbus(*arguments: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``ragbus ARGUMENTS`` in a fresh process, ``cwd`` its folder and home, no RAGBUS_
    setting but ``env``."""
    return run_ragbus(*arguments, cwd=cwd, home=cwd, env=env)


def documented_recall() -> dict[str, list[float]]:
    """The recall table of docs/retrieval.md: kind -> recall at each depth."""
    rows = re.findall(
        r"^\| (bm25|dense|hybrid) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", DOCS.read_text(), re.M
    )
    return {kind: [float(value) for value in values] for kind, *values in rows}


@pytest.mark.slow
async def test_hybrid_is_at_least_as_good_as_the_better_of_bm25_and_dense(
    lm: FakeLMServer, tmp_path: Path
) -> None:
    settings = Settings(embed_model=MODEL, embed_api_base=lm.api_base, embed_api_key="sk-test")
    embedder = Embedder.from_settings(settings)
    assert embedder is not None
    index = await index_labelled(tmp_path / "index", embedder)

    recall = await recall_by_kind(settings, index, questions())

    for depth in DEPTHS:
        best = max(recall["bm25"][depth], recall["dense"][depth])
        assert recall["hybrid"][depth] >= best, (depth, recall)
    # dense finds the paraphrases BM25 cannot; BM25 the rare terms dense misses
    assert recall["dense"][5] > recall["bm25"][5]
    assert recall["hybrid"][5] >= 0.9
    # the documentation shows these very figures
    measured = {kind: [round(by[depth], 3) for depth in DEPTHS] for kind, by in recall.items()}
    assert documented_recall() == measured


async def test_one_request_per_embedding_call_and_its_failures_classified(
    lm: FakeLMServer,
) -> None:
    embedder = Embedder(MODEL, api_base=lm.api_base, api_key="sk-test", batch_size=2)

    vectors = await embedder.embed(["one", "two", "three"])
    assert vectors.shape[0] == 3 and lm.embedding_calls == 2  # batches of 2
    for mode, expected in [
        ("error", FailureClass.TRANSIENT),
        ("bad_request", FailureClass.PERMANENT),
    ]:
        lm.set_embeddings(mode=mode)
        before = lm.embedding_calls
        with pytest.raises(Exception) as failed:
            await embedder.embed(["four"])
        assert lm.embedding_calls - before == 1  # no retries hidden in the client
        assert classify(failed.value) is expected
    lm.set_embeddings(mode="rate_limit", retry_after=7)
    with pytest.raises(Exception) as limited:
        await embedder.embed(["five"])
    assert classify(limited.value) is FailureClass.TRANSIENT
    assert retry_after(limited.value) == 7


def write_documents(folder: Path, count: int) -> None:
    """``count`` Markdown files of two passages each (two sections)."""
    folder.mkdir()
    for number in range(count):
        (folder / f"note-{number:03}.md").write_text(
            f"# Topic {number}\n\nNote {number} is about subject {number} and its care.\n\n"
            f"# More on {number}\n\nSubject {number} needs attention every {number} days.\n"
        )


@pytest.mark.slow
def test_an_update_after_changing_one_file_of_100_embeds_only_that_files_passages(
    lm: FakeLMServer, tmp_path: Path
) -> None:
    notes = tmp_path / "notes"
    write_documents(notes, 100)
    env = embed_env(lm)

    first = ragbus("index", str(notes), cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert "indexed 200 passages" in first.stdout
    assert "files: 100 added, 0 changed, 0 removed, 0 unchanged" in first.stdout
    assert len(lm.embedded) == 200 and lm.embedding_calls == 7  # batches of 32
    version = re.search(r"corpus version: (\w+)", first.stdout)
    assert version is not None

    lm.embedded.clear()
    (notes / "note-042.md").write_text(
        "# Topic 42, revised\n\nNote 42 now covers something else.\n\n"
        "# More on 42\n\nIt is checked every week.\n"
    )
    second = ragbus("index", str(notes), cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert "files: 0 added, 1 changed, 0 removed, 99 unchanged" in second.stdout
    assert "2 passages embedded, 198 reused" in second.stdout
    assert sorted(lm.embedded) == sorted(
        [
            "Topic 42, revised\nNote 42 now covers something else.",
            "More on 42\nIt is checked every week.",
        ]
    )
    assert lm.embedding_calls == 8
    assert version[1] not in second.stdout  # the content changed: a new corpus version

    (notes / "note-007.md").unlink()
    third = ragbus("index", str(notes), cwd=tmp_path, env=env)
    assert "indexed 198 passages" in third.stdout
    assert "files: 0 added, 0 changed, 1 removed, 99 unchanged" in third.stdout
    assert lm.embedding_calls == 8  # removing embeds nothing

    manifest = notes / ".ragbus-index" / MANIFEST_NAME
    written = manifest.stat()
    fourth = ragbus("index", str(notes), cwd=tmp_path, env=env)
    assert "nothing changed: the index is as it was" in fourth.stdout
    after = re.search(r"corpus version: (\w+)", fourth.stdout)
    assert after is not None and f"corpus version: {after[1]}" in third.stdout
    assert manifest.stat().st_mtime_ns == written.st_mtime_ns  # not rewritten at all
    assert lm.embedding_calls == 8


@pytest.mark.slow
def test_index_then_ask_with_hybrid_retrieval_in_fresh_processes(
    lm: FakeLMServer, tmp_path: Path
) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "clinic.md").write_text(
        "# Family care\n\nYoungsters of employees may see the paediatric physician on Fridays.\n"
    )
    (notes / "fleet.md").write_text(
        "# Company automobiles\n\nStaff may lease an automobile through the fleet office.\n"
    )
    env = embed_env(lm)
    indexed = ragbus("index", str(notes), cwd=tmp_path, env=env)
    assert indexed.returncode == 0, indexed.stderr

    asked = ragbus(
        "ask", "--json", "Can my kids see a doctor?", cwd=tmp_path,
        env={**env, "RAGBUS_RETRIEVER": "hybrid", "RAGBUS_CORPUS": str(notes / ".ragbus-index")},
    )  # fmt: skip

    assert asked.returncode == 0, asked.stderr
    payload = json.loads(asked.stdout)["payload"]
    # found by meaning: it shares no word with the question (so the offline LM, which
    # quotes sentences sharing the question's terms, finds nothing to quote in it)
    assert payload["sources"][0]["doc_id"] == "clinic.md#0"


@pytest.mark.slow
def test_index_with_the_embedding_server_down_fails_clearly_and_keeps_the_index(
    lm: FakeLMServer, tmp_path: Path
) -> None:
    notes = tmp_path / "notes"
    write_documents(notes, 3)
    lm.set_embeddings(mode="error")

    down = ragbus("index", str(notes), cwd=tmp_path, env=embed_env(lm))

    assert down.returncode == 4, down.stderr
    lines = down.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot embed the passages with {MODEL}")
    assert "sk-test-key" not in down.stderr
    assert not (notes / ".ragbus-index").exists()

    lm.set_embeddings(mode="bad_request")
    refused = ragbus("index", str(notes), cwd=tmp_path, env=embed_env(lm))
    assert refused.returncode == 3, refused.stderr
    assert "check RAGBUS_EMBED_MODEL" in refused.stderr
