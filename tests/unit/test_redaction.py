"""Secrets are redacted from log lines, error lines and tracebacks, whoever writes them."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from ragbus.config import Settings
from ragbus.config.redaction import RedactingFilter, redact, remember, secrets_of


def settings_with_secrets() -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        amqp_url="amqp://app:Amqp%40Secret1@rabbit-a:5672/,amqp://app:Amqp%40Secret1@rabbit-b/",
        cache_url="rediss://:RedisSecret2@redis:6380/1",
        lm_api_key="sk-LmSecret3",
        api_token="GatewaySecret4",
    )


def test_every_secret_of_the_settings_is_known() -> None:
    found = set(secrets_of(settings_with_secrets()))
    assert {"Amqp%40Secret1", "Amqp@Secret1", "RedisSecret2", "sk-LmSecret3"} <= found
    assert "GatewaySecret4" in found
    assert "rediss://:RedisSecret2@redis:6380/1" in found
    plain = Settings(_env_file=None, amqp_url="amqp://rabbit:5672/")  # type: ignore[call-arg]
    assert secrets_of(plain) == []  # nothing secret: nothing masked


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("amqp://u:pw@h:5672/", "amqp://u:***@h:5672/"),
        ("failed amqp:/u:pw@@@x:y:z due to", "failed amqp:/u:***@@@x:y:z due to"),
        ("redis://:pw@redis:6379/0 and redis://:pw2@r2/1", "redis://:***@redis:6379/0 and redis://:***@r2/1"),
        ("http://host:8080/path", "http://host:8080/path"),
        ("no url here: a:b@c", "no url here: a:b@c"),
    ],
)  # fmt: skip
def test_url_passwords_are_masked_in_any_text(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_remembered_secrets_are_masked_wherever_they_appear() -> None:
    remember(secrets_of(settings_with_secrets()))
    assert redact("key sk-LmSecret3 and token GatewaySecret4") == "key *** and token ***"
    assert redact("decoded Amqp@Secret1") == "decoded ***"
    remember(["abc"])  # too short to recognise: ordinary words stay readable
    assert redact("abc") == "abc"


def test_log_records_and_their_tracebacks_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    remember(["sk-LmSecret3"])
    logger = logging.getLogger("some.library")
    caplog.handler.addFilter(RedactingFilter())
    try:
        raise ValueError("invalid literal for int(): ':sk-LmSecret3@@x'")
    except ValueError:
        logger.exception("connecting to %s failed", "redis://:sk-LmSecret3@x/0")
    text = caplog.text
    assert "sk-LmSecret3" not in text
    assert "connecting to redis://:***@x/0 failed" in text
    assert "ValueError: invalid literal for int(): ':***@@x'" in text


def test_an_uncaught_traceback_is_redacted() -> None:
    code = (
        "from ragbus.config import Settings\n"
        "from ragbus.config.redaction import protect\n"
        "protect(Settings(_env_file=None, lm_api_key='sk-LmSecret3'))\n"
        "raise RuntimeError('the key sk-LmSecret3 and amqp://u:pw@h/ leaked')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "RuntimeError: the key *** and amqp://u:***@h/ leaked" in result.stderr
    assert "sk-LmSecret3" not in result.stderr


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amqp_url", "amqp:/u:Secret99@@@x:y:z"),
        ("amqp_url", "amqp://u:Secret99@host:99999/"),
        ("amqp_url", "http://u:Secret99@host/"),
        ("amqp_url", "amqp://u:Secret99@a/,garbage"),
        ("cache_url", "redis:/:Secret99@@x:y"),
        ("cache_url", "memcached://:Secret99@x:11211"),
    ],
)
def test_a_malformed_url_setting_is_refused_without_repeating_it(field: str, value: str) -> None:
    with pytest.raises(ValueError) as caught:
        Settings(_env_file=None, **{field: value})  # type: ignore[arg-type]
    assert "Secret99" not in str(caught.value)
    assert "not a valid" in str(caught.value)
