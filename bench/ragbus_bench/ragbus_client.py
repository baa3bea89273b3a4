"""The contender under test: ragbus, every stage in this process, driven by a Client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ragbus.client import Client
from ragbus.config import BusKind, Settings
from ragbus_bench.load import ASK_TIMEOUT_S, AskOne, question
from ragbus_bench.namespace import Namespace, delete_namespace


@asynccontextmanager
async def ragbus_pipeline(settings: Settings) -> AsyncIterator[AskOne]:
    """ragbus on ``settings.bus`` with its stages in this process (``Client(settings,
    run_pipeline=True)``), serving while the context is open; yields its warmed-up
    ``ask_one``. On RabbitMQ it runs in a fresh namespace, deleted on exit.

    The client waits for answers only (``follow_progress=False``), as the anchors'
    collectors do: no copy of ``documents_retrieved`` is routed to it.

    Parameters:
        settings: the bus, broker URL, corpus, LM and its latency, per-stage concurrency.
    """
    namespace = Namespace.fresh("ragbus") if settings.bus is BusKind.RABBITMQ else None
    try:
        configured = namespace.apply(settings) if namespace is not None else settings
        async with Client(configured, run_pipeline=True, follow_progress=False) as client:
            await client.ask("warm up", timeout=60)

            async def ask_one(number: int) -> object:
                return await client.ask(question(number), timeout=ASK_TIMEOUT_S)

            yield ask_one
    finally:
        if namespace is not None:
            await delete_namespace(
                settings.amqp_url.get_secret_value(), namespace.exchange, namespace.ragbus_queues()
            )
