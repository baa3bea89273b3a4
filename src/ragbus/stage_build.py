"""From a declared stage to a running one: build its handler and fit it to the runtime.

The runtime runs handlers of one shape, ``Envelope -> list[Envelope]``. A stage may be
declared with a handler of events (that shape), or of payloads (its parameter annotated
with a payload model, returning payload models), one at a time or in batches; this
module wraps each into the runtime's shape, so the runtime knows only one.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from ragbus.errors import PermanentError
from ragbus.events import Envelope, EventRegistry
from ragbus.pipeline import StageCallable, StageContext, StageSpec
from ragbus.runtime.batching import Batcher
from ragbus.runtime.stage import BatchHandler, Handler, Stage


def build_stage(spec: StageSpec, context: StageContext) -> Stage:
    """The running stage of ``spec``: its handler built by its factory and fitted to the
    runtime, its limits from ``spec`` or else from the settings (a stage's time limit
    in ``RAGBUS_STAGE_TIMEOUTS_S`` comes first). A built handler's own
    ``fingerprint`` is added to the declared one; its own ``dependency``, if it names
    one, replaces the declared one; its own ``fallback`` handler, if any, serves while
    the dependency's breaker is open.

    Parameters:
        spec: the stage's declaration.
        context: what the factory builds with (pipeline, settings, emit).
    """
    settings = context.settings
    events = context.pipeline.events
    built = spec.build(context)
    takes_payloads = _takes_payloads(built)
    handler: Handler
    if spec.batch_size > 1:
        batch = _batch_handler(spec, events, built, takes_payloads)
        handler = Batcher(batch, size=spec.batch_size, max_wait_s=spec.batch_wait_s)
    else:
        handler = _handler(spec, events, built, takes_payloads)
    concurrency = spec.concurrency or settings.concurrency
    fingerprint = ":".join(
        part for part in (spec.fingerprint, str(getattr(built, "fingerprint", ""))) if part
    )
    return Stage(
        name=spec.name,
        consumes=spec.consumes,
        handler=handler,
        concurrency=max(concurrency, spec.batch_size),
        batch_size=spec.batch_size,
        timeout_s=settings.stage_timeouts_s.get(spec.name)
        or spec.timeout_s
        or settings.stage_timeout_s,
        max_attempts=spec.max_attempts or settings.max_attempts,
        fingerprint=fingerprint,
        # a handler that knows its dependency only once built (the retriever the
        # settings chose) names it itself
        dependency=getattr(built, "dependency", None) or spec.dependency,
        cacheable=spec.cacheable,
        produces=spec.produces,
        fallback=getattr(built, "fallback", None),
    )


def _handler(
    spec: StageSpec, events: EventRegistry, built: StageCallable, takes_payloads: bool
) -> Handler:
    if not takes_payloads:
        return typing.cast(Handler, built)
    produced = _Outputs(spec, events)

    async def handle_payload(envelope: Envelope) -> list[Envelope]:
        payload = envelope.payload_as(events.spec(envelope.type).model)
        return produced.of(envelope, await built(payload))

    handle_payload.fingerprint = getattr(built, "fingerprint", "")  # type: ignore[attr-defined]
    return handle_payload


def _batch_handler(
    spec: StageSpec, events: EventRegistry, built: StageCallable, takes_payloads: bool
) -> BatchHandler:
    produced = _Outputs(spec, events)

    async def handle_batch(envelopes: list[Envelope]) -> list[list[Envelope] | BaseException]:
        items: list[Any] = (
            [e.payload_as(events.spec(e.type).model) for e in envelopes]
            if takes_payloads
            else envelopes
        )
        results = await built(items)
        if not isinstance(results, Sequence) or len(results) != len(envelopes):
            count = len(results) if isinstance(results, Sequence) else type(results).__name__
            raise PermanentError(
                f"stage {spec.name}'s batch handler returned {count} results "
                f"for {len(envelopes)} events"
            )
        fitted: list[list[Envelope] | BaseException] = []
        for envelope, result in zip(envelopes, results, strict=True):
            if isinstance(result, BaseException):
                fitted.append(result)
                continue
            try:
                fitted.append(produced.of(envelope, result))
            except PermanentError as exc:
                fitted.append(exc)
        return fitted

    return handle_batch


class _Outputs:
    """Turns what a handler returned into output envelopes derived from its input."""

    def __init__(self, spec: StageSpec, events: EventRegistry) -> None:
        self.stage = spec.name
        self.by_model = {events.spec(name).model: name for name in spec.produces}
        self.versions = {name: events.spec(name).version for name in spec.produces}

    def of(self, source: Envelope, result: Any) -> list[Envelope]:
        if result is None:
            return []
        items = result if isinstance(result, list | tuple) else [result]
        return [self._one(source, item) for item in items]

    def _one(self, source: Envelope, item: Any) -> Envelope:
        if isinstance(item, Envelope):
            return item
        if not isinstance(item, BaseModel):
            raise PermanentError(
                f"stage {self.stage} returned {type(item).__name__}: return payload models "
                f"of its produced types ({', '.join(self.by_model.values()) or 'none'})"
            )
        name = self.by_model.get(type(item)) or next(
            (name for model, name in self.by_model.items() if isinstance(item, model)), None
        )
        if name is None:
            raise PermanentError(
                f"stage {self.stage} returned a {type(item).__qualname__}, the payload of "
                f"none of its produced types ({', '.join(self.by_model.values()) or 'none'})"
            )
        return source.derive(name, item, version=self.versions[name])


def _takes_payloads(built: Callable[..., Any]) -> bool:
    """Whether ``built`` is a handler of payloads: its first parameter is annotated with a
    pydantic model (or a list of them), not ``Envelope``."""
    plain = inspect.isfunction(built) or inspect.ismethod(built)
    annotated: Any = built if plain else type(built).__call__
    try:
        hints = typing.get_type_hints(annotated)
        parameters = list(inspect.signature(built).parameters.values())
    except (NameError, TypeError, ValueError):
        return False
    if not parameters:
        return False
    annotation = hints.get(parameters[0].name)
    if typing.get_origin(annotation) in (list, Sequence):
        (annotation,) = typing.get_args(annotation) or (None,)
    return (
        isinstance(annotation, type)
        and issubclass(annotation, BaseModel)
        and not issubclass(annotation, Envelope)
    )
