"""``ragbus bench``: a closed-loop load test of an app's pipeline.

It keeps ``concurrency`` requests in flight until ``requests`` have been answered, each
one an entry event of the app (the payloads given, or the examples its pipeline
registers), and reports requests per second and latency percentiles. The stages run in
this process, on the memory bus or on RabbitMQ (then in a throw-away namespace, so a
deployment's queues are never touched). The cache and deduplication are off, so every
request does the whole work.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragbus.client import Client
from ragbus.config import BusKind, Settings, with_changes
from ragbus.errors import ConfigurationError
from ragbus.pipeline import Pipeline


@dataclass
class LoadResult:
    """What a load test measured.

    Parameters:
        requests: requests asked.
        seconds: wall time of the whole run.
        latencies_ms: latency of each answered request.
        errors: failures by kind (exception type name), e.g. ``{"AnswerTimeout": 2}``.
    """

    requests: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def answered(self) -> int:
        """Requests answered."""
        return len(self.latencies_ms)

    @property
    def per_second(self) -> float:
        """Answered requests per second."""
        return self.answered / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """The latency at ``fraction`` (0..1) of the answered requests, in ms (0 if none)."""
        if not self.latencies_ms:
            return 0.0
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        cuts = statistics.quantiles(self.latencies_ms, n=100, method="inclusive")
        return cuts[min(98, max(0, round(fraction * 100) - 1))]

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-able data."""
        return {
            "requests": self.requests,
            "answered": self.answered,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.per_second, 1),
            "p50_ms": round(self.percentile(0.5), 1),
            "p99_ms": round(self.percentile(0.99), 1),
            "errors": self.errors,
        }


def example_payloads(pipeline: Pipeline) -> tuple[str, Sequence[Mapping[str, Any]]]:
    """The entry event type to send and its example payloads;
    :class:`~ragbus.errors.ConfigurationError` when the pipeline has none to offer."""
    for name in pipeline.entry_events:
        examples = pipeline.events.spec(name).examples
        if examples:
            return name, examples
    raise ConfigurationError(
        f"app {pipeline.name!r} registers no example payloads for its entry events "
        f"({', '.join(pipeline.entry_events) or 'none'}): give some with --payloads FILE"
    )


async def load_test(
    settings: Settings,
    pipeline: Pipeline,
    *,
    requests: int,
    concurrency: int,
    event_type: str,
    payloads: Sequence[Mapping[str, Any]],
    timeout: float = 60.0,
    progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Send ``requests`` events of ``event_type`` (cycling through ``payloads``),
    ``concurrency`` at a time, and time each until its result arrives.

    Parameters:
        settings: bus, LM, limits; the cache and deduplication are turned off.
        pipeline: the app.
        requests: how many to send.
        concurrency: how many in flight at once (also each stage's concurrency).
        event_type: the entry event type to send.
        payloads: the payloads to cycle through (at least one).
        timeout: seconds one request may take (default 60).
        progress: called with the number of requests finished so far (default none).
    """
    if not payloads:
        raise ConfigurationError("no payloads to send")
    configured = with_changes(settings, cache_enabled=False, dedup=False, concurrency=concurrency)
    result = LoadResult(requests=requests, seconds=0.0)
    async with _namespace(configured, pipeline) as scoped, _client(scoped, pipeline) as client:
        await client.request(payloads[0], event_type=event_type, timeout=timeout)  # warm up
        numbers = iter(range(requests))
        finished = 0

        async def slot() -> None:
            nonlocal finished
            for number in numbers:
                started = time.perf_counter()
                try:
                    await client.request(
                        payloads[number % len(payloads)], event_type=event_type, timeout=timeout
                    )
                except Exception as exc:
                    name = type(exc).__name__
                    result.errors[name] = result.errors.get(name, 0) + 1
                else:
                    result.latencies_ms.append((time.perf_counter() - started) * 1000)
                finished += 1
                if progress is not None:
                    progress(finished)

        began = time.perf_counter()
        await asyncio.gather(*(slot() for _ in range(min(concurrency, requests))))
        result.seconds = time.perf_counter() - began
    return result


@contextlib.asynccontextmanager
async def _client(settings: Settings, pipeline: Pipeline) -> AsyncIterator[Client]:
    async with Client(settings, app=pipeline, run_pipeline=True, follow_progress=False) as client:
        yield client


@contextlib.asynccontextmanager
async def _namespace(settings: Settings, pipeline: Pipeline) -> AsyncIterator[Settings]:
    """``settings`` in a throw-away RabbitMQ namespace (deleted afterwards) on RabbitMQ;
    unchanged on the memory bus."""
    if settings.bus is not BusKind.RABBITMQ:
        yield settings
        return
    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    scoped = with_changes(settings, queue_prefix=prefix, exchange=f"{prefix}.events")
    try:
        yield scoped
    finally:
        await _delete_namespace(scoped, pipeline)


async def _delete_namespace(settings: Settings, pipeline: Pipeline) -> None:
    """Delete the exchange and every queue of ``pipeline`` in ``settings``' namespace."""
    import aio_pika

    from ragbus.bus.rabbitmq import RabbitMQBus

    topology = RabbitMQBus.from_settings(settings).topology
    names = [topology.sink_queue(sink) for sink in pipeline.sinks]
    for stage in pipeline.stage_names:
        names += [topology.stage_queue(stage), topology.dead_letter_queue(stage)]
        names += [topology.retry_queue(stage, tier) for tier in topology.delay_tiers]
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
        await channel.exchange_delete(topology.exchange)
