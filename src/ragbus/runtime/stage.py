"""A running stage: a built handler, the event types it consumes, and its limits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ragbus.events import Envelope
from ragbus.runtime.redelivery import MAX_ATTEMPTS

#: A handler: one input event in, the events it produces out. No bus code.
Handler = Callable[[Envelope], Awaitable[list[Envelope]]]

#: A batch handler: several input events in, one result per event out, in order: the
#: events it produced, or the exception that failed that event alone.
BatchHandler = Callable[[list[Envelope]], Awaitable[list[list[Envelope] | BaseException]]]


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of a pipeline as this process runs it, behind a consumer on the bus.

    Parameters:
        name: the stage (and consumer group, queue) name, e.g. ``retrieve``.
        consumes: the event types it handles.
        handler: the async function doing the work, one event at a time (a batch stage's
            handler collects events into batches; see :mod:`ragbus.runtime.batching`).
        concurrency: in-flight handler calls per process (default 16).
        timeout_s: time limit of one handler call, in seconds (default 60).
        max_attempts: deliveries of a transiently failing event before the DLQ (default 5).
        fingerprint: the stage's configuration identity (model, k, prompt version, corpus
            version), part of its cache keys (default "").
        dependency: the external dependency its handler calls (``lm``, ``retriever``); the
            stage shares that dependency's circuit breaker (default: none, no breaker).
        cacheable: whether results may be cached and identical inputs coalesced (default
            True: the handler is a pure function of its input and configuration).
        produces: the event types its outputs may have; an output of another type fails
            the event as a permanent error (default None: not checked).
        fallback: a handler that does the stage's work without its dependency (the
            generate stage with ``RAGBUS_LM_FALLBACK_MODEL``): while the dependency's
            breaker is open, events go to it instead of waiting (default None: the
            stage pauses).
        batch_size: how many events one call of its dependency serves at most (default 1;
            a batch stage's :class:`~ragbus.runtime.batching.Batcher` gathers up to this
            many per call).
    """

    name: str
    consumes: tuple[str, ...]
    handler: Handler
    concurrency: int = 16
    timeout_s: float = 60.0
    max_attempts: int = MAX_ATTEMPTS
    fingerprint: str = ""
    dependency: str | None = None
    cacheable: bool = True
    produces: tuple[str, ...] | None = None
    fallback: Handler | None = None
    batch_size: int = 1
