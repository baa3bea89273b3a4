"""Delete what interrupted benchmark runs left on the local broker.

    .venv/bin/python bench/cleanup.py [--prefix ragbus-bench.] [--dry-run]

A benchmark deletes its namespace when it ends; a run killed before that leaves its
queues and exchange behind. AMQP cannot list queues, so this lists them with
``rabbitmqctl`` (on the broker's machine) and deletes every queue and exchange whose
name starts with the prefix over AMQP (``RAGBUS_AMQP_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys

from ragbus.config import load_settings
from ragbus_bench.namespace import delete_namespace

#: The prefix of every benchmark namespace (see ``ragbus_bench.namespace``).
PREFIX = "ragbus-bench."


def listed(kind: str) -> list[str]:
    """Names of the broker's ``queues`` or ``exchanges`` (``rabbitmqctl list_<kind>``)."""
    output = subprocess.run(
        ["rabbitmqctl", "-q", f"list_{kind}", "name"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line.strip() for line in output.splitlines() if line.strip()]


async def clean(prefix: str, dry_run: bool) -> int:
    """Delete the queues and exchanges named ``prefix...``; returns how many."""
    queues = [name for name in listed("queues") if name.startswith(prefix)]
    exchanges = [name for name in listed("exchanges") if name.startswith(prefix)]
    for name in [*queues, *exchanges]:
        print(("would delete " if dry_run else "deleting ") + name)
    if dry_run or not (queues or exchanges):
        return len(queues) + len(exchanges)
    url = load_settings().amqp_url.get_secret_value()
    await delete_namespace(url, None, queues)
    for exchange in exchanges:
        await delete_namespace(url, exchange, [])
    return len(queues) + len(exchanges)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and clean up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", default=PREFIX, help=f"name prefix (default {PREFIX})")
    parser.add_argument("--dry-run", action="store_true", help="only list what would go")
    args = parser.parse_args(argv)
    if not args.prefix:
        parser.error("the prefix must not be empty")
    if shutil.which("rabbitmqctl") is None:
        print("rabbitmqctl not found: run this on the broker's machine", file=sys.stderr)
        return 1
    try:
        count = asyncio.run(clean(args.prefix, args.dry_run))
    except subprocess.CalledProcessError as exc:
        print(f"rabbitmqctl failed (is the broker up?): {exc.stderr.strip()}", file=sys.stderr)
        return 1
    print(f"{count} queue(s) and exchange(s) {'found' if args.dry_run else 'deleted'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
