"""The in-process anchor: three bounded ``asyncio.Queue``s, hand-written.

Same work as the ragbus pipeline (the same retrieve and generate handlers, JSON encode
and decode of the envelope on every hop, the same concurrency per stage), none of the
framework: no consumer groups, guards, metrics or dead letters.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ragbus.events import Envelope, new_event
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.runtime.stage import Handler
from ragbus_bench.load import AskOne, question

#: The contender's name in results.
NAME = "anchor: 3 asyncio.Queues"


@asynccontextmanager
async def memory_chain(
    retrieve: Handler, generate: Handler, concurrency: int
) -> AsyncIterator[AskOne]:
    """The hand-written chain ``queries -> retrieve -> generate -> answers``, running
    while the context is open; yields its ``ask_one``.

    Parameters:
        retrieve, generate: the pipeline's handlers (``rag_handlers(settings)``).
        concurrency: each queue's bound, and the worker tasks per stage.
    """
    queries: asyncio.Queue[str] = asyncio.Queue(maxsize=concurrency)
    retrieved: asyncio.Queue[str] = asyncio.Queue(maxsize=concurrency)
    answers: asyncio.Queue[str] = asyncio.Queue(maxsize=concurrency)
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
        query = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=question(number)))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        waiting[str(query.id)] = future
        await queries.put(json.dumps(query.model_dump(mode="json")))
        return await future

    tasks = [asyncio.create_task(collector())]
    for _ in range(concurrency):
        tasks.append(asyncio.create_task(worker(retrieve, queries, retrieved)))
        tasks.append(asyncio.create_task(worker(generate, retrieved, answers)))
    try:
        await ask_one(-1)  # warm up, outside the timed run
        yield ask_one
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
