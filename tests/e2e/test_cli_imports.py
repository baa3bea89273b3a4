"""The quick commands import only what they use: ``ragbus --help``, ``schema``, ``dlq``
and ``publish`` never load DSPy, LiteLLM, NumPy, the Redis client or the runtime's
guards, which cost a second of start-up before any of them could print a line.

A structural check, not a timing test: each command runs as a fresh process under
``python -X importtime`` and the modules it imported are read from that report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragbus.payloads.rag import RagEvent
from ragbus.pipelines.rag import RETRIEVE
from tests.amqp import Namespace

#: Packages none of the quick commands may import.
HEAVY = frozenset(
    {"dspy", "litellm", "numpy", "bm25s", "redis", "aiocache", "prometheus_client", "tenacity"}
)
#: And the broker's client, which only a command that talks to RabbitMQ needs.
BROKER = frozenset({"aio_pika", "aiormq"})


def imported(arguments: list[str], env: dict[str, str], tmp_path: Path) -> set[str]:
    """The top-level packages ``ragbus ARGUMENTS`` imports, run as a fresh process; the
    command must succeed."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ragbus.cli", *arguments],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    report = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 0, "\n".join(errors) or done.stdout
    assert report, "python -X importtime printed nothing"
    # "import time: self [us] | cumulative | imported package", nesting by indentation
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in report[1:]}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment without RAGBUS_ settings, with a user data directory (the
    memory bus's DLQ file) of the test's own."""
    values = {name: value for name, value in os.environ.items() if not name.startswith("RAGBUS_")}
    values["XDG_DATA_HOME"] = str(tmp_path / "data")
    return values


@pytest.mark.parametrize(
    "arguments",
    [
        ["--help"],
        ["schema"],
        ["schema", "--app", "analyzer"],
        ["dlq", "--help"],
        ["dlq", "list"],
        ["dlq", "list", "--app", "analyzer", "--json"],
        ["publish", "--help"],
    ],
    ids=" ".join,
)
def test_quick_commands_import_nothing_heavy(
    arguments: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    loaded = imported(arguments, env, tmp_path)
    assert "ragbus" in loaded
    heavy = loaded & (HEAVY | BROKER)
    assert not heavy, f"ragbus {' '.join(arguments)} imported {sorted(heavy)}"


def test_help_imports_no_pydantic(env: dict[str, str], tmp_path: Path) -> None:
    # help names the options' choices (BusKind, DeadLetterReason): plain enums, not the
    # settings or the event and dead-letter models, which bring pydantic. (A subcommand,
    # even its --help, loads pydantic anyway: typer converts option values with it.)
    loaded = imported(["--help"], env, tmp_path)
    assert "typer" in loaded
    models = loaded & {"pydantic", "pydantic_core", "pydantic_settings"}
    assert not models, f"ragbus --help imported {sorted(models)}"


@pytest.mark.rabbitmq
async def test_publish_imports_the_broker_client_only(
    amqp_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    namespace = Namespace(amqp_url)
    try:
        bus = await namespace.bus()
        await bus.declare(RETRIEVE, [RagEvent.QUERY_RECEIVED])
        env.update(
            RAGBUS_AMQP_URL=amqp_url,
            RAGBUS_EXCHANGE=namespace.exchange,
            RAGBUS_QUEUE_PREFIX=namespace.prefix,
        )
        loaded = imported(
            ["publish", "--bus", "rabbitmq", '{"question": "Is it quick?"}'], env, tmp_path
        )
    finally:
        await namespace.cleanup()
    assert "aio_pika" in loaded
    assert not loaded & HEAVY, f"ragbus publish imported {sorted(loaded & HEAVY)}"


@pytest.mark.slow
def test_ask_on_the_embedded_default_loads_no_broker_or_redis_client(
    env: dict[str, str], tmp_path: Path
) -> None:
    loaded = imported(["ask", "How does ragbus handle a failed event?"], env, tmp_path)
    assert "dspy" in loaded  # the generate stage runs here
    unused = loaded & (BROKER | {"redis", "aiocache"})
    assert not unused, f"ragbus ask imported {sorted(unused)} with no broker nor Redis set"
