"""The ``ragbus`` command in a user's environment, each run in a fresh process: indexing
a file or a folder, the version, where the memory bus keeps its dead letters, and one
clear line with the right exit code for each mistake."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ragbus import __version__
from ragbus.bus.base import DeadLetter, DeadLetterReason
from ragbus.bus.memory import MemoryBus
from ragbus.cli_common import ExitCode
from ragbus.events import new_event
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.pipelines.rag import STAGE_NAMES

pytestmark = pytest.mark.timeout(120)

ZEBRAS = """\
# Zebras

Zebras are African equines with black and white stripes.

# Ferns

Ferns are plants that reproduce with spores instead of seeds.
"""


def ragbus(
    *arguments: str, cwd: Path, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``ragbus ARGUMENTS`` in a new process, in ``cwd``, with ``home`` as the user's
    home and data directory and no RAGBUS_ setting but ``env``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RAGBUS_")}
    environment.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"))
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ragbus.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=cwd,
        env=environment,
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The single ``error: ...`` line of a failed command (asserting its exit code)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_version(work: Path, home: Path) -> None:
    result = ragbus("--version", cwd=work, home=home)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ragbus {__version__}"


def test_index_takes_a_single_file_and_ask_answers_from_it(work: Path, home: Path) -> None:
    (work / "one.md").write_text(ZEBRAS)

    indexed = ragbus("index", "one.md", cwd=work, home=home)

    assert indexed.returncode == 0, indexed.stderr
    target = work / ".one.md.ragbus-index"
    assert f"indexed 2 passages from one.md into {target.name}" in indexed.stdout
    asked = ragbus(
        "ask", "--json", "How do ferns reproduce?", cwd=work, home=home,
        env={"RAGBUS_CORPUS": str(target)},
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    payload = json.loads(asked.stdout)["payload"]
    assert "spores" in payload["answer"]
    assert payload["sources"][0]["doc_id"].startswith("one.md#")


def test_index_lists_what_it_skipped_and_writes_a_private_index(work: Path, home: Path) -> None:
    docs = work / "docs"
    docs.mkdir()
    (docs / "zebras.md").write_text(ZEBRAS)
    (docs / "env.txt").symlink_to("/proc/self/environ")
    (docs / "loop").symlink_to(".", target_is_directory=True)

    result = ragbus("index", "docs", cwd=work, home=home)

    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "skipped env.txt: a symlink that leads outside the corpus folder",
        "skipped loop: a link to the corpus root",
    ]
    assert "indexed 2 passages" in result.stdout
    index = docs / ".ragbus-index"
    assert stat.S_IMODE(index.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in index.iterdir()} == {0o600}


@pytest.mark.parametrize(
    ("arguments", "environment", "expected"),
    [
        (["index", "nowhere"], {}, "nowhere does not exist: give a folder or a .md"),
        (["index", "notes.pdf"], {}, "corpus file notes.pdf is not a document"),
        (["index", "docs", "--out", "docs/keep"], {}, "is a folder that is not a ragbus index"),
        (["index", "docs", "--out", "docs/zebras.md"], {}, "is a file, not a ragbus index"),
        (
            ["index", "docs"],
            {"RAGBUS_CORPUS_MAX_FILE_BYTES": "50"},
            f"corpus file zebras.md is {len(ZEBRAS.encode())} bytes, over the limit of 50",
        ),
        (["index", "docs"], {"RAGBUS_CORPUS_MAX_FILES": "0"}, "invalid setting"),
        (["index", "empty"], {}, "no documents (.md, .txt, .jsonl) found in corpus empty"),
        (["ask", "--corpus", "nowhere", "q"], {}, "corpus path does not exist: nowhere"),
    ],
)
def test_a_bad_path_or_setting_is_one_line_with_the_configuration_exit_code(
    work: Path, home: Path, arguments: list[str], environment: dict[str, str], expected: str
) -> None:
    docs = work / "docs"
    (docs / "keep").mkdir(parents=True)
    (docs / "keep" / "precious.bin").write_text("not an index")
    (docs / "zebras.md").write_text(ZEBRAS)
    (work / "notes.pdf").write_text("%PDF")
    (work / "empty").mkdir()

    line = one_error_line(
        ragbus(*arguments, cwd=work, home=home, env=environment), ExitCode.CONFIGURATION
    )

    assert expected in line
    assert (docs / "keep" / "precious.bin").read_text() == "not an index"


def test_an_index_that_cannot_be_written_is_one_line(work: Path, home: Path) -> None:
    (work / "one.md").write_text(ZEBRAS)

    # a folder inside a file cannot be made, whoever runs the command (root included)
    line = one_error_line(
        ragbus("index", "one.md", "--out", "one.md/index", cwd=work, home=home),
        ExitCode.CONFIGURATION,
    )

    assert line.startswith("error: cannot write the index to one.md/index: ")
    assert line.endswith("choose another place with --out")
    assert (work / "one.md").read_text() == ZEBRAS


def a_dead_letter() -> DeadLetter:
    event = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question="Where is my DLQ?"))
    return DeadLetter.from_body(
        event.encode(), stage="retrieve", reason=DeadLetterReason.FAILED, error="LM down"
    )


def seed(path: Path, letter: DeadLetter) -> None:
    async def add() -> None:
        await MemoryBus(dlq_path=path).dead_letters(STAGE_NAMES).add(letter)

    asyncio.run(add())


def listed_ids(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["id"] for line in result.stdout.splitlines()]


def test_the_memory_dlq_is_the_same_from_any_folder(tmp_path: Path, home: Path) -> None:
    """Dead letters live in the user's data directory, not in a .ragbus/ folder under
    whatever directory a command runs in."""
    letter = a_dead_letter()
    seed(home / ".local" / "share" / "ragbus" / "dlq.sqlite3", letter)

    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        result = ragbus("dlq", "list", "--json", cwd=folder, home=home)
        assert listed_ids(result) == [str(letter.id)]
        assert not (folder / ".ragbus").exists()


def test_the_dlq_path_setting_still_wins(tmp_path: Path, home: Path, work: Path) -> None:
    letter = a_dead_letter()
    chosen = tmp_path / "elsewhere" / "letters.sqlite3"
    seed(chosen, letter)

    result = ragbus(
        "dlq", "list", "--json", cwd=work, home=home, env={"RAGBUS_DLQ_PATH": str(chosen)}
    )

    assert listed_ids(result) == [str(letter.id)]
    assert not (home / ".local" / "share" / "ragbus").exists()
