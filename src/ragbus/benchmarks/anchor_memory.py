"""The in-process anchor: three bounded ``asyncio.Queue``s, hand-written.

Same work as the ragbus pipeline (the same retrieve and generate handlers, JSON encode
and decode of the envelope on every hop, the same concurrency per stage), none of the
framework: no consumer groups, guards, metrics or dead letters.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ragbus.benchmarks.load import closed_loop, question
from ragbus.benchmarks.stats import BenchConfig, BenchResult
from ragbus.events import Envelope, EventType, QueryReceived, new_event
from ragbus.runtime.stage import Handler


async def run_memory_anchor(
    retrieve: Handler, generate: Handler, config: BenchConfig
) -> BenchResult:
    """Benchmark the hand-written chain ``queries -> retrieve -> generate -> answers``."""
    queries: asyncio.Queue[str] = asyncio.Queue(maxsize=config.concurrency)
    retrieved: asyncio.Queue[str] = asyncio.Queue(maxsize=config.concurrency)
    answers: asyncio.Queue[str] = asyncio.Queue(maxsize=config.concurrency)
    waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def worker(
        handler: Handler, inbox: asyncio.Queue[str], outbox: asyncio.Queue[str]
    ) -> None:
        while True:
            body = await inbox.get()
            event = Envelope.model_validate(json.loads(body))
            for output in await handler(event):
                await outbox.put(json.dumps(output.model_dump(mode="json")))

    async def collector() -> None:
        while True:
            answer = json.loads(await answers.get())
            future = waiting.pop(answer["correlation_id"], None)
            if future is not None:
                future.set_result(answer)

    async def ask_one(number: int) -> object:
        query = new_event(EventType.QUERY_RECEIVED, QueryReceived(question=question(number)))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        waiting[str(query.id)] = future
        await queries.put(json.dumps(query.model_dump(mode="json")))
        return await future

    tasks = [asyncio.create_task(collector())]
    for _ in range(config.concurrency):
        tasks.append(asyncio.create_task(worker(retrieve, queries, retrieved)))
        tasks.append(asyncio.create_task(worker(generate, retrieved, answers)))
    try:
        return await closed_loop("anchor: 3 asyncio.Queues", ask_one, config)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
