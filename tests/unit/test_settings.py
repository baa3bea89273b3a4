"""Settings: environment prefix, .env file, and every setting documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragbus.config import BusKind, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text()
    missing = [name for name in Settings.model_fields if f"`RAGBUS_{name.upper()}`" not in text]
    assert missing == []


def test_environment_and_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("RAGBUS_BUS=rabbitmq\nRAGBUS_TOP_K=7\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGBUS_TOP_K", "9")
    settings = Settings()
    assert settings.bus is BusKind.RABBITMQ  # from .env
    assert settings.top_k == 9  # the environment wins over .env


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="top_k"):
        Settings(_env_file=None, top_k=0)  # type: ignore[call-arg]
