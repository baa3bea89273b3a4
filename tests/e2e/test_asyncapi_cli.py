"""``ragbus asyncapi`` as a subprocess, and the gateway's ``/asyncapi.json``: the same
document, following the settings."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ragbus.apps import load_app
from ragbus.asyncapi import asyncapi_document
from ragbus.cli_common import ExitCode
from ragbus.config import Settings
from tests.e2e.test_cli_environment import ragbus as run_ragbus


def ragbus(tmp_path: Path, *arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_ragbus(*arguments, cwd=tmp_path, home=tmp_path, env=env)


def test_asyncapi_writes_the_apps_document_with_the_configured_names(tmp_path: Path) -> None:
    out = tmp_path / "analyzer.asyncapi.json"
    done = ragbus(
        tmp_path, "asyncapi", "--app", "analyzer", "--out", str(out), RAGBUS_QUEUE_PREFIX="shop"
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote the AsyncAPI document of analyzer to {out}" in done.stderr
    document = json.loads(out.read_text())
    default_url = Settings(_env_file=None).amqp_url.get_secret_value()  # type: ignore[call-arg]
    expected = asyncapi_document(load_app("analyzer"), queue_prefix="shop", amqp_url=default_url)
    assert document == expected
    assert "shop.analyze" in document["channels"]

    printed = ragbus(tmp_path, "asyncapi")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["info"]["title"] == "ragbus pipeline rag"


def test_asyncapi_to_an_unwritable_place_fails_with_one_line(tmp_path: Path) -> None:
    done = ragbus(tmp_path, "asyncapi", "--out", str(tmp_path / "missing" / "a.json"))
    assert done.returncode == ExitCode.CONFIGURATION
    assert done.stderr.startswith("error: cannot write") and done.stderr.count("\n") == 1
