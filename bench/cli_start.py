"""How long ``ragbus`` commands take to start, each a fresh process, in turns.

    .venv/bin/python bench/cli_start.py                  # 7 runs of each command
    .venv/bin/python bench/cli_start.py --repeats 3 --json

Times ``ragbus --help``, ``schema``, ``dlq --help``, ``dlq list`` (memory bus),
``publish --bus rabbitmq`` (into a throw-away namespace on ``RAGBUS_AMQP_URL``, default
``amqp://guest:guest@127.0.0.1:5672/``; ``--no-broker`` leaves it out) and ``ask`` on
the embedded default (memory bus, bundled corpus, offline LM) until its answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from ragbus.bus.rabbitmq import RabbitMQBus
from ragbus.config import BusKind, load_settings
from ragbus.payloads.rag import RagEvent
from ragbus.pipelines.rag import RETRIEVE
from ragbus_bench.cli_start import (
    ASK_TARGET_S,
    QUICK_TARGET_S,
    Command,
    default_env,
    measure,
    render,
)
from ragbus_bench.namespace import Namespace, delete_namespace

QUICK = (
    Command("ragbus --help", ("--help",), QUICK_TARGET_S),
    Command("ragbus schema", ("schema",), QUICK_TARGET_S),
    Command("ragbus dlq --help", ("dlq", "--help"), QUICK_TARGET_S),
    Command("ragbus dlq list", ("dlq", "list"), QUICK_TARGET_S),
)
ASK = Command(
    "ragbus ask QUESTION",
    ("ask", "How does ragbus handle a failed event?"),
    ASK_TARGET_S,
    until_first_line=True,
)


async def declare(url: str, namespace: Namespace) -> None:
    """Declare the retrieve stage's queue in ``namespace``, so a publish is routed."""
    settings = namespace.apply(load_settings(bus=BusKind.RABBITMQ, amqp_url=url))
    bus = RabbitMQBus.from_settings(settings)
    await bus.connect()
    try:
        await bus.declare(RETRIEVE, [RagEvent.QUERY_RECEIVED])
    finally:
        await bus.close()


def main(argv: list[str] | None = None) -> int:
    """Time the commands and print a Markdown table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs of each command (7)")
    parser.add_argument("--no-broker", action="store_true", help="leave `publish` out")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    options = parser.parse_args(argv)
    ragbus = Path(sys.executable).with_name("ragbus")
    commands = list(QUICK)
    url = load_settings().amqp_url.get_secret_value()
    namespace = Namespace.fresh("cli")
    if not options.no_broker:
        asyncio.run(declare(url, namespace))
        publish_env = {
            "RAGBUS_AMQP_URL": url,
            "RAGBUS_EXCHANGE": namespace.exchange,
            "RAGBUS_QUEUE_PREFIX": namespace.prefix,
        }
        commands.append(
            Command(
                "ragbus publish --bus rabbitmq EVENT",
                ("publish", "--bus", "rabbitmq", '{"question": "Is it quick?"}'),
                QUICK_TARGET_S,
                env=publish_env,
            )
        )
    commands.append(ASK)
    try:
        with tempfile.TemporaryDirectory() as data_home:
            results = measure(
                ragbus, commands, repeats=options.repeats, env=default_env(Path(data_home))
            )
    finally:
        if not options.no_broker:
            asyncio.run(delete_namespace(url, namespace.exchange, namespace.ragbus_queues()))
    if options.json:
        print(json.dumps([result.as_dict() for result in results], indent=2))
    else:
        print("\n".join(render(results)))
    return 1 if any(result.errors for result in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
