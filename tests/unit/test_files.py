"""Private, atomic files: 0600 whatever the umask, symlinks replaced, never followed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ragbus.files import ensure_private, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        target = tmp_path / "deep" / "index.json"
        write_private(target, "content")
        ensure_private(tmp_path / "dlq.sqlite3")
    finally:
        os.umask(previous)
    assert target.read_text() == "content"
    assert mode(target) == 0o600
    assert mode(tmp_path / "dlq.sqlite3") == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["index.json"]  # no temp left


def test_a_planted_symlink_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "index.json"
    link.symlink_to(victim)
    write_private(link, "new")
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "new"
