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


def test_connection_urls_are_secrets_and_shown_masked() -> None:
    from ragbus.config.urls import mask_url

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        amqp_url="amqp://app:s3cret@rabbit:5672/",
        cache_url="redis://:hunter2@redis:6379/0",
    )
    shown = repr(settings) + str(settings)
    assert "s3cret" not in shown and "hunter2" not in shown
    assert settings.amqp_url.get_secret_value() == "amqp://app:s3cret@rabbit:5672/"
    assert mask_url("amqp://app:s3cret@rabbit:5672/") == "amqp://app:***@rabbit:5672/"
    assert mask_url("redis://:hunter2@redis:6379/0") == "redis://:***@redis:6379/0"
    assert (
        mask_url("amqp://u:p@a:5672/,amqp://u:p@[::1]:5673/v")
        == "amqp://u:***@a:5672/,amqp://u:***@[::1]:5673/v"
    )
    assert mask_url("amqp://rabbit/") == "amqp://rabbit/"
