"""The ``ragbus`` command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragbus.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in a temporary folder, with a user data directory (the default DLQ's) of the
    test's own and no RAGBUS_ settings."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for name in list(os.environ):
        if name.startswith("RAGBUS_"):
            monkeypatch.delenv(name)


def test_ask_prints_answer_sources_and_stage_times() -> None:
    result = runner.invoke(app, ["ask", "How does ragbus handle a failed event?"])
    assert result.exit_code == 0, result.output
    assert "Sources:" in result.output
    assert "failures.md" in result.output
    assert "retrieve" in result.output and "generate" in result.output
    assert "extractive" in result.output


def test_ask_json_prints_the_answer_event() -> None:
    result = runner.invoke(app, ["ask", "--json", "Which LM answers by default?"])
    assert result.exit_code == 0, result.output
    event = json.loads(result.output)
    assert event["type"] == "answer_generated"
    assert event["payload"]["sources"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["ask", "   "], "the question is empty"),
        (["ask", "--corpus", "/no/such/folder", "q"], "corpus path does not exist"),
        (["ask", "x" * 4001], "at most 4000 characters"),
        (["schema", "nope"], "unknown event type 'nope'"),
        (["index", "/no/such/folder"], "/no/such/folder does not exist"),
        (["worker", "--bus", "memory"], "a worker needs a shared bus"),
    ],
)
def test_errors_are_one_clear_line(arguments: list[str], message: str) -> None:
    result = runner.invoke(app, arguments)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_schema_prints_json_schema() -> None:
    result = runner.invoke(app, ["schema", "query_received"])
    assert result.exit_code == 0
    schemas = json.loads(result.output)
    k = schemas["payloads"]["query_received"]["properties"]["k"]
    assert 50 in [option.get("maximum") for option in k.get("anyOf", [k])]


def test_index_then_ask_a_users_corpus(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "zebras.md").write_text(
        "# Zebras\n\nZebras are African equines with black and white stripes.\n\n"
        "# Ferns\n\nFerns are plants that reproduce with spores instead of seeds.\n"
    )
    indexed = runner.invoke(app, ["index", str(docs)])
    assert indexed.exit_code == 0, indexed.output
    index_dir = docs / ".ragbus-index"
    assert index_dir.exists()
    result = runner.invoke(
        app, ["ask", "--json", "--corpus", str(index_dir), "How do ferns reproduce?"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)["payload"]
    assert "spores" in payload["answer"]
    assert payload["sources"][0]["doc_id"].startswith("zebras.md")


def test_console_script_runs_in_a_fresh_process(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "ragbus"
    completed = subprocess.run(
        [str(script), "ask", "What is a minimal envelope?"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("RAGBUS_")},
    )
    assert completed.returncode == 0, completed.stderr
    assert "Sources:" in completed.stdout
