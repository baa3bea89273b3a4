"""Which contenders run on which bus, set up for the duration of a benchmark.

- memory bus: ragbus, and the chain of ``asyncio.Queue``s;
- RabbitMQ: ragbus, the raw aio-pika chain and the FastStream chain, each in its own
  namespace on the same broker.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from ragbus.config import BusKind, Settings
from ragbus.errors import ConfigurationError
from ragbus_bench import anchor_memory
from ragbus_bench.amqp_chain import AIOPIKA_NAME, FASTSTREAM_NAME
from ragbus_bench.anchor_aiopika import aiopika_chain
from ragbus_bench.cpu import CpuMeter
from ragbus_bench.handlers import rag_handlers
from ragbus_bench.ragbus_client import ragbus_pipeline
from ragbus_bench.rounds import Contender
from ragbus_bench.stats import ragbus_name

#: The error when the FastStream anchor cannot be imported.
FASTSTREAM_MISSING = (
    "the FastStream anchor needs faststream[rabbit]: pip install 'faststream[rabbit]' "
    "(or the dev extra: pip install -e '.[dev]'), or run with --no-anchor"
)


async def open_contenders(
    stack: AsyncExitStack, settings: Settings, *, anchor: bool = True
) -> list[Contender]:
    """Set up ragbus on ``settings.bus`` and, with ``anchor``, its anchors; they stay up
    until ``stack`` closes. ragbus comes first.

    Parameters:
        stack: owns the contenders' lifetimes.
        settings: the bus, broker URL, corpus, LM and its latency, per-stage concurrency.
        anchor: also set up the anchors (default True).

    Raises:
        ConfigurationError: RabbitMQ anchors are asked for and FastStream is missing.
    """
    rabbitmq = settings.bus is BusKind.RABBITMQ
    if anchor and rabbitmq:
        try:
            from ragbus_bench.anchor_faststream import faststream_chain
        except ImportError as exc:
            raise ConfigurationError(f"{FASTSTREAM_MISSING} ({exc})") from exc
    ask_ragbus = await stack.enter_async_context(ragbus_pipeline(settings))
    contenders = [Contender(ragbus_name(settings.bus), ask_ragbus, CpuMeter(broker=rabbitmq))]
    if not anchor:
        return contenders
    retrieve, generate = rag_handlers(settings)
    prefetch = settings.concurrency
    if not rabbitmq:
        ask = await stack.enter_async_context(
            anchor_memory.memory_chain(retrieve, generate, prefetch)
        )
        return [*contenders, Contender(anchor_memory.NAME, ask)]
    url = settings.amqp_url.get_secret_value()
    ask = await stack.enter_async_context(aiopika_chain(url, retrieve, generate, prefetch))
    contenders.append(Contender(AIOPIKA_NAME, ask, CpuMeter(broker=True)))
    ask = await stack.enter_async_context(faststream_chain(url, retrieve, generate, prefetch))
    contenders.append(Contender(FASTSTREAM_NAME, ask, CpuMeter(broker=True)))
    return contenders
