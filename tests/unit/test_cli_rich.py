"""Progress bars and tables of the commands: bars only on a terminal, tables whole."""

from __future__ import annotations

import pytest

from ragbus.cli_rich import phased_progress, progress_bar, table_console


def test_off_a_terminal_there_is_no_bar(capsys: pytest.CaptureFixture[str]) -> None:
    with phased_progress() as show:
        assert show is None
    with progress_bar("replaying", 3) as advance:
        advance(1)  # a no-op, never an error
    assert capsys.readouterr().err == ""


def test_on_a_terminal_each_phase_gets_a_bar(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich then treats the output as a terminal
    monkeypatch.setenv("COLUMNS", "100")
    with phased_progress({"reading": "reading documents"}) as show:
        assert show is not None
        show("reading", 2, 2)
        show("embedding", 5, 10)
    err = capsys.readouterr().err
    assert "reading documents" in err and "2/2" in err
    assert "embedding" in err and "5/10" in err


def test_tables_off_a_terminal_are_wide_enough_for_every_column() -> None:
    assert table_console().width == 160
