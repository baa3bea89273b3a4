"""A client for other Python services: publish a pipeline's events and wait for results.

With the memory bus (the embedded default) the client also runs the pipeline's stages
in its own process, since there are no workers to do it; with RabbitMQ it only
publishes and listens, and workers elsewhere do the work.

Any pipeline: :meth:`Client.request` publishes an entry event and waits for the
pipeline's final event of the same correlation. Pipelines that answer questions (the
``rag`` contract: ``query_received`` in, ``answer_generated`` out) also get
:meth:`Client.ask` and :meth:`Client.stream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from ragbus.apps import load_app
from ragbus.batch import DEFAULT_CONCURRENCY, BatchQuestion, BatchResult, answer_in_order, as_inputs
from ragbus.bus.base import Bus, InboundMessage
from ragbus.bus.factory import make_bus
from ragbus.config import Settings
from ragbus.errors import AnswerTimeout as AnswerTimeout  # raised here, imported from here by users
from ragbus.events import Envelope, InvalidEvent, utc_now
from ragbus.host import Host, runs_embedded
from ragbus.json_input import parse_json
from ragbus.payloads.rag import QueryReceived, RagEvent, Turn
from ragbus.pipeline import Pipeline
from ragbus.runtime.cancellation import cancel_request
from ragbus.runtime.guards.chain import Middleware
from ragbus.runtime.runner import Runtime


@dataclass
class Result:
    """The outcome of :meth:`Client.request`: the event sent, the final event it led to,
    and the events in between (when the client follows progress)."""

    request: Envelope
    event: Envelope
    progress: list[Envelope] = field(default_factory=list)


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
    """Routes followed events to per-correlation queues and to followers."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
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
            event = self.pipeline.events.validate(fields)
        except InvalidEvent:
            return
        if waiting is not None:
            waiting.put_nowait(event)
        for queue in following:
            await queue.put(event)


class Client:
    """Publishes events and waits for results; use as ``async with Client(settings)``.

    Parameters:
        settings: bus, URLs, and (for the embedded pipeline) corpus and LM.
        app: the pipeline (default: the one ``settings.app`` names, ``RAGBUS_APP``).
        bus: use this bus instead of building one from ``settings`` (default: build one).
        run_pipeline: run the pipeline's stages in this process (default: only on the
            memory bus, where there are no workers).
        follow_progress: also receive each request's intermediate events (e.g.
            ``documents_retrieved``) into ``progress`` (default True; off, only final
            events reach this client, which is cheaper under load).
        follow_tokens: also receive each request's transient events (tokens), for
            :meth:`stream`; the embedded pipeline, if any, then streams (default False:
            tokens cost the stages time; on RabbitMQ the workers stream when
            ``RAGBUS_STREAM_TOKENS`` is true).
        listen_concurrency: events this client's listener takes at once (RabbitMQ: its
            prefetch); default 64, or 1024 with ``follow_tokens``: every request then
            brings dozens of tokens, and a listener that takes too few at a time falls
            behind and drops them.
        middleware: extra guards for the embedded stages (default none).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        app: Pipeline | None = None,
        bus: Bus | None = None,
        run_pipeline: bool | None = None,
        follow_progress: bool = True,
        follow_tokens: bool = False,
        listen_concurrency: int | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self.settings = settings
        self.app = app if app is not None else load_app(settings.app)
        self.bus = bus or make_bus(settings)
        self.run_pipeline = runs_embedded(settings) if run_pipeline is None else run_pipeline
        self.host: Host | None = None
        self.middleware = tuple(middleware)
        self._listener = _Listener(self.app)
        self._group = f"client-{uuid.uuid4().hex[:12]}"
        self._final_types = frozenset(self.app.final_events)
        entry = set(self.app.entry_events)
        self._follow_types: set[str] = set(self._final_types)
        if follow_progress:
            self._follow_types.update(
                spec.name
                for spec in self.app.events
                if not spec.transient and spec.name not in entry
            )
        self.follow_tokens = follow_tokens
        if follow_tokens:
            self._follow_types.update(self.app.transient_events)
        if listen_concurrency is None:
            listen_concurrency = 1024 if follow_tokens else 64
        self._listen_concurrency = listen_concurrency
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

    @property
    def runtime(self) -> Runtime | None:
        """The runtime of the stages this client runs itself, if any."""
        return self.host.runtime if self.host is not None else None

    async def open(self, *, follow: Sequence[str] = ()) -> None:
        """Connect, start the embedded stages if any, and start listening. On RabbitMQ
        the connection waits for the broker up to ``settings.connect_timeout_s``, then
        raises :class:`~ragbus.bus.errors.BrokerUnavailableError`.

        Parameters:
            follow: event types to follow besides the progress of requests.
        """
        await self.bus.connect()
        if self.run_pipeline:
            self.host = Host(
                self.app,
                self.bus,
                self.settings,
                stream=self.follow_tokens or self.settings.stream_tokens,
                middleware=self.middleware,
            )
            await self.host.attach()
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
            if self.host is not None:
                await self.host.stop(grace=self.settings.shutdown_grace_s)
            else:
                await self.bus.stop(grace=self.settings.shutdown_grace_s)
            self._open = False
        await self.bus.close()

    def event(
        self,
        payload: BaseModel | Mapping[str, Any],
        *,
        event_type: str | None = None,
        deadline: datetime | None = None,
    ) -> Envelope:
        """A new event of the pipeline, its payload validated
        (:class:`~ragbus.events.InvalidEvent` otherwise).

        Parameters:
            payload: a payload model instance, or a dict.
            event_type: its type (default: the type whose model ``payload`` is, or, for
                a dict, the pipeline's entry event when it has exactly one).
            deadline: absolute UTC deadline (default: none).
        """
        events = self.app.events
        if event_type is None:
            if isinstance(payload, BaseModel):
                try:
                    event_type = events.model_type(type(payload))
                except KeyError as exc:
                    raise InvalidEvent(str(exc.args[0])) from None
            elif len(self.app.entry_events) == 1:
                event_type = self.app.entry_events[0]
            else:
                raise InvalidEvent(
                    f"name the event type: pipeline {self.app.name!r} takes "
                    f"{', '.join(self.app.entry_events) or 'no entry event'}"
                )
        return events.new(event_type, payload, deadline=deadline)

    async def publish(
        self, event: Envelope | BaseModel | Mapping[str, Any], *, event_type: str | None = None
    ) -> Envelope:
        """Publish an envelope, or a payload wrapped in a new envelope (see :meth:`event`).

        Returns the envelope as published.
        """
        if not isinstance(event, Envelope):
            event = self.event(event, event_type=event_type)
        await self.bus.publish(event)
        return event

    async def request(
        self,
        payload: Envelope | BaseModel | Mapping[str, Any],
        *,
        event_type: str | None = None,
        timeout: float = 60.0,
    ) -> Result:
        """Publish an event and wait for the pipeline's final event of its correlation
        (never another caller's).

        Parameters:
            payload: an envelope, or a payload for a new event (see :meth:`event`); a new
                event's deadline is ``timeout`` seconds from now.
            event_type: the new event's type (default: see :meth:`event`).
            timeout: seconds to wait (default 60).

        Raises:
            AnswerTimeout: no final event within ``timeout``.
            InvalidEvent: the payload breaks its model.
        """
        sent = (
            payload
            if isinstance(payload, Envelope)
            else self.event(payload, event_type=event_type, deadline=_deadline(timeout))
        )
        progress: list[Envelope] = []
        async with contextlib.aclosing(self._follow(sent, timeout)) as events:
            async for event in events:
                if event.type in self._final_types:
                    return Result(request=sent, event=event, progress=progress)
                if not self.app.events.spec(event.type).transient:
                    progress.append(event)
        raise AnswerTimeout(f"no result within {timeout:g}s")  # pragma: no cover

    async def _follow(
        self, sent: Envelope, timeout: float, *, include_sent: bool = False
    ) -> AsyncGenerator[Envelope, None]:
        """Publish ``sent`` and yield the events of its correlation until a final one
        (``sent`` itself first, with ``include_sent``). If the wait ends before the final
        event (a timeout, a cancelled task, an iterator closed early), the request is
        cancelled: the workers drop its queued events and stop its work in flight."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + timeout
        inbox: asyncio.Queue[Envelope] = asyncio.Queue()
        self._listener.by_correlation[sent.correlation] = inbox
        published = finished = False
        try:
            await self.bus.publish(sent)
            published = True
            if include_sent:
                yield sent
            while True:
                try:
                    async with asyncio.timeout_at(ends):
                        event = await inbox.get()
                except TimeoutError:
                    raise AnswerTimeout(f"no result within {timeout:g}s") from None
                if event.type in self._final_types:
                    finished = True
                yield event
                if finished:
                    return
        finally:
            self._listener.by_correlation.pop(sent.correlation, None)
            if published and not finished:
                await cancel_request(self.bus, sent.correlation, "the client stopped waiting")

    async def stream_events(
        self,
        payload: Envelope | BaseModel | Mapping[str, Any],
        *,
        event_type: str | None = None,
        timeout: float = 60.0,
    ) -> AsyncGenerator[Envelope, None]:
        """Publish an event and yield it, then every event of its correlation as it
        arrives (progress, tokens with ``follow_tokens``), the final event last. Close the
        iterator early (``contextlib.aclosing``) to stop waiting; nothing is left behind.

        Parameters and errors as for :meth:`request`.
        """
        sent = (
            payload
            if isinstance(payload, Envelope)
            else self.event(payload, event_type=event_type, deadline=_deadline(timeout))
        )
        follow = self._follow(sent, timeout, include_sent=True)
        try:
            async for event in follow:
                yield event
        finally:
            await follow.aclose()

    # -- questions (pipelines with the rag contract) -------------------------------------

    def _question(
        self, question: str, *, k: int | None, history: Iterable[Turn], timeout: float
    ) -> Envelope:
        if RagEvent.QUERY_RECEIVED not in self.app.events or (
            RagEvent.ANSWER_GENERATED not in self._final_types
        ):
            raise InvalidEvent(
                f"pipeline {self.app.name!r} does not answer questions (it takes "
                f"{', '.join(self.app.entry_events) or 'nothing'}): use request()"
            )
        payload = QueryReceived(question=question, k=k, history=list(history))
        return self.app.events.new(RagEvent.QUERY_RECEIVED, payload, deadline=_deadline(timeout))

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
            QueueFullError: the pipeline is at capacity (its first queue stayed full for
                ``RAGBUS_QUEUE_FULL_WAIT_S``); the question was not taken: ask again
                after ``retry_after`` seconds.
            pydantic.ValidationError: the question breaks the payload's limits.
            InvalidEvent: the pipeline does not answer questions.
        """
        query = self._question(question, k=k, history=history, timeout=timeout)
        result = await self.request(query, timeout=timeout)
        return Answer(query=query, answer=result.event, progress=result.progress)

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
        query = self._question(question, k=k, history=history, timeout=timeout)
        events = self.stream_events(query, timeout=timeout)
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()

    async def ask_many(
        self,
        questions: Iterable[str | BatchQuestion],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        k: int | None = None,
        timeout: float = 60.0,
        on_result: Callable[[BatchResult], None] | None = None,
    ) -> list[BatchResult]:
        """Ask many questions, at most ``concurrency`` at once, and return their results
        in the order of ``questions``. A question that fails (a timeout, an invalid
        question, a full pipeline that stayed full for its ``timeout``) gets a result
        with its error; the others are answered all the same (see :mod:`ragbus.batch`).

        Parameters:
            questions: the questions, as text or :class:`~ragbus.batch.BatchQuestion`.
            concurrency: questions asked at once (default 8).
            k: passages to retrieve when a question does not say (default: the stage's).
            timeout: seconds each question may take; also its deadline (default 60).
            on_result: called with each result as it is ready, in order (default none),
                e.g. to advance a progress bar.
        """
        results = []
        answers = answer_in_order(
            self, as_inputs(questions), concurrency=concurrency, k=k, timeout=timeout
        )
        async with contextlib.aclosing(answers):
            async for result in answers:
                results.append(result)
                if on_result is not None:
                    on_result(result)
        return results

    async def events(self, types: Sequence[str]) -> AsyncIterator[Envelope]:
        """Follow every event of ``types`` published from now on (types must have been
        passed to :meth:`open` as ``follow``, or be followed progress types)."""
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


def _deadline(timeout: float) -> datetime:
    return utc_now() + timedelta(seconds=timeout)
