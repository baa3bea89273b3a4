"""The bundled guide (src/ragbus/corpus/, what the quick start answers from) tells the
truth: every setting, command and option it names exists, and its list of all settings
is complete, with the real defaults. Commands are checked against their ``--help`` as a
user sees it, in a fresh process."""

from __future__ import annotations

import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ragbus.config import Settings
from tests.docs.schemas import RAGBUS

CORPUS = Path(__file__).resolve().parents[2] / "src" / "ragbus" / "corpus"
GUIDE = {path.name: path.read_text() for path in sorted(CORPUS.glob("*.md"))}

_SETTING = re.compile(r"\bRAGBUS_([A-Z][A-Z0-9_]*)")
_CODE = re.compile(r"`([^`\n]+)`")
_OPTION = re.compile(r"^--[a-z][a-z-]*$")
#: Words in a command that stand for something the reader fills in.
_PLACEHOLDER = re.compile(r"^(\.\.\.|[A-Z_]+|<.*>)$")


def _code_spans() -> list[tuple[str, str]]:
    return [(name, span) for name, text in GUIDE.items() for span in _CODE.findall(text)]


def _commands() -> list[tuple[str, list[str]]]:
    """Each ``ragbus ...`` the guide shows in code, as (page, words)."""
    return [(name, span.split()) for name, span in _code_spans() if span.startswith("ragbus ")]


def test_the_guide_is_there() -> None:
    assert {"overview.md", "cli.md", "configuration.md", "failures.md"} <= set(GUIDE)
    assert len(_commands()) >= 10


def test_every_setting_the_guide_names_exists() -> None:
    named = {match.lower() for text in GUIDE.values() for match in _SETTING.findall(text)}
    unknown = sorted(f"RAGBUS_{name.upper()}" for name in named - set(Settings.model_fields))
    assert unknown == [], f"the guide names settings that do not exist: {unknown}"


def _help(path: tuple[str, ...]) -> tuple[int, str]:
    """Exit code and output of ``ragbus PATH --help`` in a fresh process."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAGBUS_")}
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")
    result = subprocess.run(
        [RAGBUS, *path, "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def helps() -> dict[tuple[str, ...], tuple[int, str]]:
    """``--help`` of ``ragbus`` and of every (sub)command the guide names."""
    paths: set[tuple[str, ...]] = {()}
    for _, words in _commands():
        path: list[str] = []
        for word in words[1:3]:
            if word.startswith("-") or _PLACEHOLDER.match(word) or word.startswith('"'):
                break
            path.append(word)
            paths.add(tuple(path))
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(paths, pool.map(_help, paths), strict=True))


def _command_path(
    words: list[str], helps: dict[tuple[str, ...], tuple[int, str]]
) -> tuple[str, ...]:
    """The longest command path of ``words`` that is a command (``dlq list``)."""
    path: tuple[str, ...] = ()
    for word in words[1:3]:
        candidate = (*path, word)
        if candidate not in helps or helps[candidate][0] != 0:
            break
        path = candidate
    return path


@pytest.mark.slow
def test_every_command_and_option_the_guide_names_exists(
    helps: dict[tuple[str, ...], tuple[int, str]],
) -> None:
    problems = []
    for page, words in _commands():
        path = _command_path(words, helps)
        if not path and not words[1].startswith("-"):
            problems.append(f"{page}: `{' '.join(words)}`: no such command")
            continue
        if len(words) > len(path) + 1:
            following = words[len(path) + 1]
            is_group = "Commands" in helps[path][1]
            if is_group and not (following.startswith("-") or _PLACEHOLDER.match(following)):
                problems.append(f"{page}: `{' '.join(words)}`: no command {following!r}")
        text = helps[path][1]
        for word in words[len(path) + 1 :]:
            option = word.split("=", 1)[0]
            if _OPTION.match(option) and not re.search(rf"{re.escape(option)}\b", text):
                problems.append(f"{page}: `ragbus {' '.join(path)}` has no option {option}")
    everything = "\n".join(text for _, text in helps.values())
    for page, span in _code_spans():
        if _OPTION.match(span) and not re.search(rf"{re.escape(span)}\b", everything):
            problems.append(f"{page}: no command has the option {span}")
    assert problems == [], "\n".join(problems)


def _shown(value: str) -> Any:
    """A default as the guide writes it: `x`, a number, true/false, a list, or unset."""
    value = value.strip()
    if value.startswith("unset"):
        return None
    match = re.match(r"`([^`]*)`", value)
    text = match[1] if match else value.split(" ")[0]
    try:
        return json.loads(text)
    except ValueError:
        return text


def _actual(name: str) -> Any:
    field = Settings.model_fields[name]
    if field.default_factory is not None:
        return None  # computed when read: not compared
    value = field.default
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def test_the_list_of_all_settings_is_complete_with_the_real_defaults() -> None:
    text = GUIDE["configuration.md"].split("## All settings at a glance", 1)[1]
    listed = dict(re.findall(r"^- `RAGBUS_([A-Z0-9_]+)` = (.+)$", text, re.MULTILINE))
    assert sorted(name.lower() for name in listed) == sorted(Settings.model_fields)
    wrong = []
    for name, value in listed.items():
        actual, shown = _actual(name.lower()), _shown(value)
        if callable(Settings.model_fields[name.lower()].default_factory):
            continue  # computed when read (the host and process id; an empty list)
        if isinstance(actual, bool) or isinstance(shown, bool):
            same = actual is shown
        elif isinstance(actual, int | float) and isinstance(shown, int | float):
            same = float(actual) == float(shown)
        elif isinstance(actual, list) and isinstance(shown, list):
            same = [float(item) for item in actual] == [float(item) for item in shown]
        else:
            same = actual == shown
        if not same:
            wrong.append(f"RAGBUS_{name}: the guide says {value!r}, the default is {actual!r}")
    assert wrong == [], "\n".join(wrong)


#: Integrations readers expect of such a tool, and the distribution that would bring each:
#: the guide may name one only once ragbus depends on it.
INTEGRATIONS = {
    "OpenTelemetry": "opentelemetry-api",
    "Jaeger": "opentelemetry-exporter-jaeger",
    "Zipkin": "opentelemetry-exporter-zipkin",
    "Kafka": "aiokafka",
    "NATS": "nats-py",
    "Celery": "celery",
    "Sentry": "sentry-sdk",
    "structlog": "structlog",
}


def test_the_guide_promises_no_integration_ragbus_does_not_ship() -> None:
    depends_on = {
        re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()
        for requirement in metadata.requires("ragbus") or []
    }
    promised = {
        name
        for name in INTEGRATIONS
        for text in GUIDE.values()
        if re.search(rf"\b{re.escape(name)}\b", text, re.IGNORECASE)
    }
    unshipped = sorted(name for name in promised if INTEGRATIONS[name] not in depends_on)
    assert unshipped == [], f"the guide names integrations ragbus does not ship: {unshipped}"
