"""A worker whose retrieve stage kills its own process on one question (a poison message).

Run it like ``ragbus worker`` (settings from ``RAGBUS_*``)::

    python tests/process/poison_worker.py --stages retrieve --delivery-limit 3

It serves the RAG pipeline's real stages, except that the retrieve handler calls
``os._exit(1)`` when the question contains ``--marker`` (default ``POISON``): the
process dies with the message unacknowledged, as a segfault or an out-of-memory kill
would leave it. It builds its own :class:`RabbitMQBus` because ``ragbus worker`` has no
delivery-limit option: every worker of a namespace must declare the stage queues with
the same ``x-delivery-limit`` (RabbitMQ refuses a declaration with another one).

It logs ``poison worker <id> ready`` once it consumes, stops on SIGTERM like a worker.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from ragbus.bus.rabbitmq import RabbitMQBus
from ragbus.config import Settings
from ragbus.events import Envelope
from ragbus.host import Host
from ragbus.pipelines.rag import pipeline as rag
from ragbus.runtime.stage import Handler

logger = logging.getLogger("poison_worker")


def poisoned(handler: Handler, marker: str) -> Handler:
    """``handler``, except that it kills the process on a question containing ``marker``."""

    async def handle(event: Envelope) -> list[Envelope]:
        if marker in str(event.payload.get("question", "")):
            logger.warning("poison question %s: exiting", event.id)
            os._exit(1)
        return await handler(event)

    return handle


async def serve(stage_names: list[str], delivery_limit: int, marker: str) -> None:
    settings = Settings()
    app = rag.wrap_stage("retrieve", lambda handler: poisoned(handler, marker))
    bus = RabbitMQBus(
        settings.amqp_url.get_secret_value(),
        exchange=settings.exchange,
        queue_prefix=settings.queue_prefix,
        delivery_limit=delivery_limit,
    )
    host = Host(app, bus, settings, stages=stage_names)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await bus.connect()
    try:
        await host.start()
        logger.warning("poison worker %s ready: %s", settings.worker_id, ",".join(stage_names))
        await stop.wait()
        await host.stop(settings.shutdown_grace_s)
    finally:
        await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="retrieve,generate")
    parser.add_argument("--delivery-limit", type=int, default=3)
    parser.add_argument("--marker", default="POISON")
    arguments = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    names = [name.strip() for name in arguments.stages.split(",") if name.strip()]
    asyncio.run(serve(names, arguments.delivery_limit, arguments.marker))


if __name__ == "__main__":
    main()
