"""A client for other Python services: publish events and ask questions.

With the memory bus (the embedded default) the client also runs the pipeline's stages
in its own process, since there are no workers to do it; with RabbitMQ it only
publishes and listens, and workers elsewhere do the work.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from ragbus.bus.base import Bus, InboundMessage, emitter
from ragbus.bus.factory import make_bus
from ragbus.config import BusKind, Settings
from ragbus.events import (
    Envelope,
    EventType,
    QueryReceived,
    Turn,
    new_event,
    utc_now,
)
from ragbus.json_input import parse_json
from ragbus.runtime.runner import Runtime
from ragbus.runtime.stage import Stage

#: Event types a client follows while it waits for an answer.
PROGRESS_TYPES = (EventType.DOCUMENTS_RETRIEVED, EventType.ANSWER_GENERATED)


class AnswerTimeout(TimeoutError):
    """No answer arrived within the time asked for."""


@dataclass
class Answer:
    """The outcome of :meth:`Client.ask`: the answer event and the events before it."""

    query: Envelope
    answer: Envelope
    progress: list[Envelope] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The answer's text."""
        return str(self.answer.payload["answer"])


class _Listener:
    """Routes events of the followed types to per-correlation queues and to followers."""

    def __init__(self) -> None:
        self.by_correlation: dict[uuid.UUID, asyncio.Queue[Envelope]] = {}
        self.followers: list[tuple[frozenset[str], asyncio.Queue[Envelope]]] = []

    async def __call__(self, message: InboundMessage) -> None:
        try:
            fields = parse_json(message.body)
            correlation = uuid.UUID(str(fields["correlation_id"]))
        except (ValueError, TypeError, KeyError):
            return  # not ours to judge: the stages dead-letter invalid events
        waiting = self.by_correlation.get(correlation)
        following = [queue for types, queue in self.followers if fields.get("type") in types]
        if waiting is None and not following:
            return  # someone else's event: not worth validating
        try:
            event = Envelope.model_validate(fields)
        except ValueError:
            return
        if waiting is not None:
            waiting.put_nowait(event)
        for queue in following:
            await queue.put(event)


class Client:
    """Publishes events and waits for answers; use as ``async with Client(settings)``.

    Parameters:
        settings: bus, URLs, corpus and LM (for the embedded pipeline).
        bus: use this bus instead of building one from ``settings`` (default: build one).
        run_pipeline: run the pipeline's stages in this process (default: only when the
            bus is the memory bus).
        stages: the stages to run when ``run_pipeline`` (default: the RAG pipeline built
            from ``settings``).
        follow_progress: also receive each question's intermediate events
            (``documents_retrieved``) into :attr:`Answer.progress` (default True; off,
            only answers reach this client, which is cheaper under load).
        follow_tokens: also receive each question's ``answer_token`` events, for
            :meth:`stream`; the embedded pipeline, if any, then streams its answers
            (default False: tokens cost the generate stage time; on RabbitMQ the workers
            stream when ``RAGBUS_STREAM_TOKENS`` is true).
        listen_concurrency: events this client's listener takes at once (RabbitMQ: its
            prefetch); default 64, or 1024 with ``follow_tokens``: every question then
            brings dozens of tokens, and a listener that takes too few at a time falls
            behind the generate stage and drops them.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        bus: Bus | None = None,
        run_pipeline: bool | None = None,
        stages: Sequence[Stage] | None = None,
        follow_progress: bool = True,
        follow_tokens: bool = False,
        listen_concurrency: int | None = None,
    ) -> None:
        self.settings = settings
        self.stages = list(stages) if stages is not None else None
        self.bus = bus or make_bus(settings)
        self.run_pipeline = settings.bus is BusKind.MEMORY if run_pipeline is None else run_pipeline
        self.runtime: Runtime | None = None
        self._listener = _Listener()
        self._group = f"client-{uuid.uuid4().hex[:12]}"
        self._follow_types: set[str] = (
            set(PROGRESS_TYPES) if follow_progress else {EventType.ANSWER_GENERATED}
        )
        self.follow_tokens = follow_tokens
        if listen_concurrency is None:
            listen_concurrency = 1024 if follow_tokens else 64
        self._listen_concurrency = listen_concurrency
        if follow_tokens:
            self._follow_types.add(EventType.ANSWER_TOKEN)
        self._open = False

    async def __aenter__(self) -> Client:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` succeeded and :meth:`close` was not called since."""
        return self._open

    async def open(self, *, follow: Sequence[str] = ()) -> None:
        """Connect, start the embedded stages if any, and start listening. On RabbitMQ
        the connection waits for the broker up to ``settings.connect_timeout_s``, then
        raises :class:`~ragbus.bus.errors.BrokerUnavailableError`.

        Parameters:
            follow: event types to follow besides the progress of asked questions.
        """
        from ragbus.pipelines.rag import SINKS, rag_pipeline

        await self.bus.connect()
        if self.run_pipeline:
            stages = self.stages
            if stages is None:
                streams = self.follow_tokens or self.settings.stream_tokens
                emit = emitter(self.bus) if streams else None
                stages = rag_pipeline(self.settings, emit=emit)
            self.runtime = Runtime(self.bus, stages, settings=self.settings, sinks=SINKS)
            await self.runtime.declare_sinks()
            self.runtime.subscribe()
        self._follow_types.update(follow)
        self.bus.subscribe(
            self._group,
            sorted(self._follow_types),
            self._listener,
            concurrency=self._listen_concurrency,
            ephemeral=True,
        )
        await self.bus.start()
        self._open = True

    async def close(self) -> None:
        """Stop the embedded stages (letting in-flight work finish) and disconnect."""
        if self._open:
            if self.runtime is not None:
                await self.runtime.stop(grace=self.settings.shutdown_grace_s)
            else:
                await self.bus.stop(grace=self.settings.shutdown_grace_s)
            self._open = False
        await self.bus.close()

    async def publish(self, event: Envelope | BaseModel | dict[str, Any]) -> Envelope:
        """Publish an envelope, or a question (a ``QueryReceived`` or a dict like
        ``{"question": ...}``) wrapped in a new ``query_received`` envelope.

        Returns the envelope as published.
        """
        if not isinstance(event, Envelope):
            payload = event if isinstance(event, BaseModel) else QueryReceived.model_validate(event)
            event = new_event(EventType.QUERY_RECEIVED, payload)
        await self.bus.publish(event)
        return event

    async def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        history: Iterable[Turn] = (),
        timeout: float = 60.0,
    ) -> Answer:
        """Ask ``question`` and wait for its answer (never another caller's).

        Parameters:
            question: the question, 1..4000 characters.
            k: passages to retrieve (default: the retrieve stage's setting).
            history: earlier turns of the conversation, at most 20 (default none).
            timeout: seconds to wait; also the query's deadline (default 60).

        Raises:
            AnswerTimeout: no answer within ``timeout``.
            pydantic.ValidationError: the question breaks the payload's limits.
        """
        query = _query(question, k=k, history=history, timeout=timeout)
        inbox: asyncio.Queue[Envelope] = asyncio.Queue()
        self._listener.by_correlation[query.id] = inbox
        progress: list[Envelope] = []
        try:
            await self.bus.publish(query)
            async with asyncio.timeout(timeout):
                while True:
                    event = await inbox.get()
                    if event.type == EventType.ANSWER_GENERATED:
                        return Answer(query=query, answer=event, progress=progress)
                    if event.type != EventType.ANSWER_TOKEN:
                        progress.append(event)
        except TimeoutError:
            raise AnswerTimeout(f"no answer within {timeout:g}s") from None
        finally:
            self._listener.by_correlation.pop(query.id, None)

    async def stream(
        self,
        question: str,
        *,
        k: int | None = None,
        history: Iterable[Turn] = (),
        timeout: float = 60.0,
    ) -> AsyncGenerator[Envelope, None]:
        """Ask ``question`` and yield its events as they arrive: first the
        ``query_received`` as published, then ``documents_retrieved``, the
        ``answer_token`` events (with ``follow_tokens``; none for a cached answer), and
        last ``answer_generated``. Close the iterator early (``contextlib.aclosing``) to
        stop waiting; nothing is left behind.

        Parameters:
            question: the question, 1..4000 characters.
            k: passages to retrieve (default: the retrieve stage's setting).
            history: earlier turns of the conversation, at most 20 (default none).
            timeout: seconds to wait for the answer in all; also the query's deadline
                (default 60).

        Raises:
            AnswerTimeout: no answer within ``timeout``.
            pydantic.ValidationError: the question breaks the payload's limits.
        """
        loop = asyncio.get_running_loop()
        ends = loop.time() + timeout
        query = _query(question, k=k, history=history, timeout=timeout)
        inbox: asyncio.Queue[Envelope] = asyncio.Queue()
        self._listener.by_correlation[query.id] = inbox
        try:
            await self.bus.publish(query)
            yield query
            while True:
                try:
                    async with asyncio.timeout_at(ends):
                        event = await inbox.get()
                except TimeoutError:
                    raise AnswerTimeout(f"no answer within {timeout:g}s") from None
                yield event
                if event.type == EventType.ANSWER_GENERATED:
                    return
        finally:
            self._listener.by_correlation.pop(query.id, None)

    async def events(self, types: Sequence[str]) -> AsyncIterator[Envelope]:
        """Follow every event of ``types`` published from now on (types must have been
        passed to :meth:`open` as ``follow``, or be progress types)."""
        missing = set(types) - self._follow_types
        if missing:
            raise ValueError(f"not following {sorted(missing)}: pass them to open(follow=...)")
        queue: asyncio.Queue[Envelope] = asyncio.Queue(maxsize=1000)
        entry = (frozenset(types), queue)
        self._listener.followers.append(entry)
        try:
            while True:
                yield await queue.get()
        finally:
            self._listener.followers.remove(entry)


def _query(question: str, *, k: int | None, history: Iterable[Turn], timeout: float) -> Envelope:
    """A new ``query_received`` event whose deadline is ``timeout`` seconds from now."""
    payload = QueryReceived(question=question, k=k, history=list(history))
    return new_event(
        EventType.QUERY_RECEIVED, payload, deadline=utc_now() + timedelta(seconds=timeout)
    )
