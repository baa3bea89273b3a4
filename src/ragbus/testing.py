"""Test your own pipeline: run it on the memory bus inside a test.

::

    from ragbus.testing import PipelineHarness

    async def test_cleaning() -> None:
        async with PipelineHarness(pipeline) as harness:
            result = await harness.send({"text": "  a   b "})
            assert result.payload["text"] == "a b"
            assert await harness.dead_letters() == []

With pytest, the ``ragbus_harness`` fixture (installed with ragbus as a pytest plugin)
builds harnesses whose files live in the test's ``tmp_path``::

    async def test_cleaning(ragbus_harness) -> None:
        async with ragbus_harness(pipeline) as harness:
            ...

The harness runs every stage in the test's process and event loop, exactly as a worker
runs them (the same guards, the same event contract), with no server, no network and
no state that outlives it. The offline LM answers unless the settings name another.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ragbus.bus.base import DeadLetter, DeadLetterFilter
from ragbus.bus.memory import MemoryBus
from ragbus.client import Client
from ragbus.config import Settings, with_changes
from ragbus.events import Envelope
from ragbus.pipeline import Pipeline


class PipelineHarness:
    """A pipeline running on the memory bus for a test; use as ``async with``.

    Parameters:
        pipeline: the pipeline under test.
        directory: where the dead-letter file goes (default: a temporary folder, removed
            on exit).
        settings: the settings to run with (default: defaults, ignoring the
            environment and any ``.env`` file, with the result cache off so every event
            does the work).
        **overrides: settings to change (e.g. ``lm_model="openai/..."``).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        directory: Path | None = None,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> None:
        self.pipeline = pipeline
        self._directory = directory
        self._base = settings
        self._overrides = overrides
        self._stack = contextlib.AsyncExitStack()
        self._seen: dict[uuid.UUID, list[Envelope]] = defaultdict(list)
        self._arrived = asyncio.Event()
        self.client: Client | None = None
        self.bus: MemoryBus | None = None

    async def __aenter__(self) -> PipelineHarness:
        directory = self._directory
        if directory is None:
            directory = Path(self._stack.enter_context(tempfile.TemporaryDirectory()))
        base = self._base or Settings(_env_file=None, cache_enabled=False)  # type: ignore[call-arg]
        settings = with_changes(
            base, bus="memory", dlq_path=directory / "dlq.sqlite3", **self._overrides
        )
        self.bus = MemoryBus(
            queue_max_length=settings.queue_max_length,
            queue_full_wait_s=settings.queue_full_wait_s,
            dlq_path=settings.dlq_path,
            delivery_limit=settings.delivery_limit,
        )
        followed = [spec.name for spec in self.pipeline.events]
        self.client = Client(
            settings, app=self.pipeline, bus=self.bus, run_pipeline=True, follow_tokens=True
        )
        await self.client.open(follow=followed)
        self._stack.push_async_callback(self.client.close)
        recorder = asyncio.create_task(self._record(self.client, followed))
        # let the recorder start following before anything is published: the stages'
        # workers take a message the moment it is queued
        await asyncio.sleep(0)

        async def stop_recording() -> None:
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)

        self._stack.push_async_callback(stop_recording)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def _record(self, client: Client, types: list[str]) -> None:
        async for event in client.events(types):
            self._seen[event.correlation].append(event)
            self._arrived.set()

    def _client(self) -> Client:
        if self.client is None:
            raise RuntimeError("the harness is not open: use `async with PipelineHarness(...)`")
        return self.client

    async def publish(
        self, payload: Envelope | BaseModel | Mapping[str, Any], *, event_type: str | None = None
    ) -> Envelope:
        """Publish an event into the pipeline (an envelope, or a payload of its entry event
        or of ``event_type``); returns it as published."""
        return await self._client().publish(payload, event_type=event_type)

    async def result(self, sent: Envelope, *, timeout: float = 10.0) -> Envelope:
        """The pipeline's final event for ``sent`` (same correlation), once it arrives;
        ``TimeoutError`` after ``timeout`` seconds (default 10)."""
        finals = set(self.pipeline.final_events)
        async with asyncio.timeout(timeout):
            while True:
                for event in self._seen.get(sent.correlation, []):
                    if event.type in finals:
                        return event
                self._arrived.clear()
                await self._arrived.wait()

    async def send(
        self,
        payload: Envelope | BaseModel | Mapping[str, Any],
        *,
        event_type: str | None = None,
        timeout: float = 10.0,
    ) -> Envelope:
        """:meth:`publish`, then :meth:`result`: the final event for it."""
        sent = await self.publish(payload, event_type=event_type)
        return await self.result(sent, timeout=timeout)

    def events(self, sent: Envelope) -> list[Envelope]:
        """Every event of ``sent``'s correlation seen so far (tokens included), in
        arrival order; ``sent`` itself included."""
        return list(self._seen.get(sent.correlation, []))

    async def drain(self, *, timeout: float = 10.0) -> None:
        """Wait until every queue is empty and no handler or retry is running."""
        assert self.bus is not None
        await self.bus.drain(timeout=timeout)

    async def dead_letters(self, where: DeadLetterFilter | None = None) -> list[DeadLetter]:
        """The dead letters so far (after waiting for the pipeline to settle)."""
        await self.drain()
        assert self.bus is not None
        return await self.bus.dead_letters(self.pipeline.stage_names).select(
            where or DeadLetterFilter()
        )
