"""A pipeline is a value: its name, its event types, its stages and its sinks.

Declare one at import time in your own module; the commands load it with
``--app module:attribute`` and a host builds only the stages its process serves::

    from pydantic import BaseModel
    from ragbus import Pipeline

    class TextIn(BaseModel):
        text: str

    class Cleaned(BaseModel):
        text: str

    pipeline = Pipeline("cleaner")
    pipeline.event("text_in", TextIn)
    pipeline.event("text_cleaned", Cleaned)

    @pipeline.stage(consumes="text_in", produces="text_cleaned")
    async def clean(text: TextIn) -> Cleaned:
        return Cleaned(text=" ".join(text.text.split()))

A stage is declared with a handler, or with a *factory* that builds the handler when a
process is about to serve the stage (so a process that does not serve it never loads
what it needs, such as a search index or an LM). See :meth:`Pipeline.stage`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar, cast

from pydantic import BaseModel

from ragbus.events import EventRegistry, EventSpec
from ragbus.streaming import Emit

if TYPE_CHECKING:
    import dspy

    from ragbus.config import Settings

#: The pattern of a stage name: it is part of queue names.
STAGE_NAME_CHARACTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")

#: Default longest wait of a batch stage for its batch to fill, in seconds.
DEFAULT_BATCH_WAIT_S: Final = 0.05

#: What a factory returns, or what a stage is declared with: a handler of events (or of
#: payloads; see :meth:`Pipeline.stage`), or a batch handler when ``batch_size > 1``.
StageCallable: TypeAlias = Callable[..., Awaitable[Any]]
#: Builds a stage's handler for one process.
StageFactory: TypeAlias = Callable[["StageContext"], StageCallable]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class StageContext:
    """What a stage factory gets to build its handler with.

    Parameters:
        pipeline: the pipeline the stage belongs to.
        stage: the stage's declaration.
        settings: this process's settings (corpus, LM, limits, ...).
        emit: publishes transient events (tokens) while the handler works, or None when
            nobody in this deployment streams them (default None).
    """

    pipeline: Pipeline
    stage: StageSpec
    settings: Settings
    emit: Emit | None = None
    _lm: Any = field(default=None, repr=False)

    def lm(self) -> dspy.LM:
        """The LM the settings name (``RAGBUS_LM_MODEL``, ...), built once per context."""
        if self._lm is None:
            from ragbus.lm import build_lm

            self._lm = build_lm(self.settings)
        return cast("dspy.LM", self._lm)


@dataclass(frozen=True)
class StageSpec:
    """One stage of a pipeline, as declared: what it consumes and produces, how to build
    its handler, and its limits. Built into a running stage by a host.

    Parameters:
        name: the stage's name (lowercase letters, digits, ``_`` and ``-``); also its
            consumer group and queue name.
        consumes: the event types it handles.
        produces: the event types it may publish as outputs (an output of another type
            is a failure of the stage, never published).
        build: the factory of its handler.
        dependency: the external dependency its handler calls (``lm``, ``retriever``,
            ``embedder``, ...): the stage shares that dependency's circuit breaker and
            flow control; a built handler's own ``dependency`` attribute, if it names
            one, replaces it (default: none).
        timeout_s: time limit of one handler call (default: ``RAGBUS_STAGE_TIMEOUT_S``).
        concurrency: in-flight events per process (default: ``RAGBUS_CONCURRENCY``;
            at least ``batch_size``).
        max_attempts: deliveries of a transiently failing event before the DLQ
            (default: ``RAGBUS_MAX_ATTEMPTS``).
        cacheable: whether results may be cached and identical inputs coalesced: only
            when the output is a pure function of the input and ``fingerprint``
            (default False).
        fingerprint: what determines the output besides the input, for cache keys; a
            built handler's own ``fingerprint`` attribute, if it has one, is added
            (default "").
        batch_size: events handed to the handler at once (default 1: one at a time);
            above 1 the handler takes a list and returns one result per event.
        batch_wait_s: longest wait for a batch to fill (default 0.05 s).
        streams: the transient event type the stage emits while it works (tokens),
            if any (default none).
        description: what the stage does (default: the handler's docstring).
    """

    name: str
    consumes: tuple[str, ...]
    produces: tuple[str, ...]
    build: StageFactory
    dependency: str | None = None
    timeout_s: float | None = None
    concurrency: int | None = None
    max_attempts: int | None = None
    cacheable: bool = False
    fingerprint: str = ""
    batch_size: int = 1
    batch_wait_s: float = DEFAULT_BATCH_WAIT_S
    streams: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or set(self.name) - STAGE_NAME_CHARACTERS:
            raise ValueError(
                f"invalid stage name {self.name!r}: use lowercase letters, digits, _ and -"
            )
        if not self.consumes:
            raise ValueError(f"stage {self.name!r} consumes no event type")
        if self.batch_size < 1:
            raise ValueError(f"stage {self.name!r}: batch_size must be at least 1")
        if self.batch_wait_s < 0:
            raise ValueError(f"stage {self.name!r}: batch_wait_s must not be negative")
        for limit in ("timeout_s", "concurrency", "max_attempts"):
            value = getattr(self, limit)
            if value is not None and value <= 0:
                raise ValueError(f"stage {self.name!r}: {limit} must be positive")


@dataclass(frozen=True)
class SinkSpec:
    """Where a pipeline's results wait for consumers that come later.

    Parameters:
        name: the sink's name (RabbitMQ: queue ``<prefix>.<name>``).
        event_types: the event types it keeps.
        max_length: events kept at most; the oldest go first (default 10,000).
        ttl_s: how long an event is kept, in seconds (default 3600).
    """

    name: str
    event_types: tuple[str, ...]
    max_length: int = 10_000
    ttl_s: float = 3600.0


class Pipeline:
    """A pipeline: its event types, its stages and its sinks, as one value.

    Parameters:
        name: the pipeline's name (for humans, logs and AsyncAPI).
        description: what it does (default "").
    """

    def __init__(self, name: str, *, description: str = "") -> None:
        self.name = name
        self.description = description
        self.events = EventRegistry()
        self.stages: dict[str, StageSpec] = {}
        self.sinks: dict[str, SinkSpec] = {}

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, stages={list(self.stages)})"

    # -- declaring ---------------------------------------------------------------------

    def event(
        self,
        name: str,
        model: type[BaseModel],
        *,
        version: int = 1,
        transient: bool = False,
        description: str = "",
        examples: Iterable[Mapping[str, Any]] = (),
    ) -> str:
        """Register the event type ``name`` with its payload ``model``; returns ``name``.

        Parameters:
            name: the type's name and routing key.
            model: the pydantic model of its payload.
            version: the payload's schema version (default 1).
            transient: interim progress such as tokens (default False); see
                :class:`~ragbus.events.EventSpec`.
            description: what the event means (default: the model's docstring).
            examples: example payloads, for docs, AsyncAPI and ``ragbus bench``
                (default none).
        """
        if name.startswith("ragbus."):
            raise ValueError(
                f"event type {name!r}: names starting with 'ragbus.' are ragbus's own "
                "control events"
            )
        self.events.register(
            name,
            model,
            version=version,
            transient=transient,
            description=description,
            examples=examples,
        )
        return name

    def add_stage(self, spec: StageSpec) -> StageSpec:
        """Add a declared stage; its event types must be registered first."""
        if spec.name in self.stages:
            raise ValueError(f"pipeline {self.name!r} already has a stage {spec.name!r}")
        for event_type in (*spec.consumes, *spec.produces, *filter(None, [spec.streams])):
            if event_type not in self.events:
                raise ValueError(
                    f"stage {spec.name!r} names event type {event_type!r}, which pipeline "
                    f"{self.name!r} does not register (pipeline.event({event_type!r}, Model))"
                )
        for event_type in (*spec.consumes, *spec.produces):
            if self.events.spec(event_type).transient:
                raise ValueError(
                    f"stage {spec.name!r}: {event_type!r} is transient; declare it as "
                    "streams=, not as an input or output"
                )
        if spec.streams is not None and not self.events.spec(spec.streams).transient:
            raise ValueError(f"stage {spec.name!r}: streams={spec.streams!r} must be transient")
        self.stages[spec.name] = spec
        return spec

    def stage(
        self,
        name: str | None = None,
        *,
        consumes: str | Sequence[str],
        produces: str | Sequence[str] = (),
        dependency: str | None = None,
        timeout_s: float | None = None,
        concurrency: int | None = None,
        max_attempts: int | None = None,
        cacheable: bool = False,
        fingerprint: str = "",
        batch_size: int = 1,
        batch_wait_s: float = DEFAULT_BATCH_WAIT_S,
        streams: str | None = None,
    ) -> Callable[[F], F]:
        """Declare a stage with the decorated function; see :class:`StageSpec` for the
        options. The function is one of:

        - an ``async`` handler of payloads: its parameter is annotated with the consumed
          event's payload model and it returns a payload model of a produced type (or a
          list of them, or None for no output)::

              @pipeline.stage(consumes="text_in", produces="text_cleaned")
              async def clean(text: TextIn) -> Cleaned: ...

        - an ``async`` handler of events: its parameter is annotated ``Envelope`` and it
          returns the list of output envelopes (``envelope.derive(...)``);
        - a plain (not async) *factory* taking a :class:`StageContext` and returning
          such a handler, called once in each process that serves the stage::

              @pipeline.stage(consumes="query", produces="answer", dependency="lm")
              def answer(context: StageContext) -> Handler:
                  return AnswerHandler(context.lm())

        With ``batch_size > 1`` the handler takes a list (of payloads or envelopes) and
        returns one result per item, in order: an output (as above) or an exception for
        that item alone.

        Parameters:
            name: the stage's name (default: the function's name).
        """

        def declare(function: F) -> F:
            stage_name = name or function.__name__.lower()
            build = _as_factory(function)
            self.add_stage(
                StageSpec(
                    name=stage_name,
                    consumes=_names(consumes),
                    produces=_names(produces),
                    build=build,
                    dependency=dependency,
                    timeout_s=timeout_s,
                    concurrency=concurrency,
                    max_attempts=max_attempts,
                    cacheable=cacheable,
                    fingerprint=fingerprint,
                    batch_size=batch_size,
                    batch_wait_s=batch_wait_s,
                    streams=streams,
                    description=_first_paragraph(function.__doc__),
                )
            )
            return function

        return declare

    def sink(
        self,
        name: str,
        event_types: str | Sequence[str],
        *,
        max_length: int = 10_000,
        ttl_s: float = 3600.0,
    ) -> SinkSpec:
        """Keep the latest events of ``event_types`` for consumers that come later, so a
        pipeline's final events are always routable; see :class:`SinkSpec`."""
        types = _names(event_types)
        unknown = [event_type for event_type in types if event_type not in self.events]
        if unknown:
            raise ValueError(f"sink {name!r} names unregistered event types {unknown}")
        spec = SinkSpec(name=name, event_types=types, max_length=max_length, ttl_s=ttl_s)
        self.sinks[name] = spec
        return spec

    # -- variants ----------------------------------------------------------------------

    def copy(self) -> Pipeline:
        """A new pipeline with the same event types, stages and sinks; changing one does
        not change the other."""
        other = Pipeline(self.name, description=self.description)
        for spec in self.events:
            other.events.add(spec)
        other.stages = dict(self.stages)
        other.sinks = dict(self.sinks)
        return other

    def with_stage(self, name: str, **changes: Any) -> Pipeline:
        """A copy of this pipeline whose stage ``name`` is declared with ``changes``
        (any :class:`StageSpec` field, e.g. ``build=``, ``concurrency=``); for variants
        and for tests that swap a stage's handler."""
        if name not in self.stages:
            raise ValueError(f"pipeline {self.name!r} has no stage {name!r}")
        other = self.copy()
        other.stages[name] = dataclasses.replace(self.stages[name], **changes)
        return other

    def wrap_stage(self, name: str, wrapper: Callable[[StageCallable], StageCallable]) -> Pipeline:
        """A copy of this pipeline whose stage ``name`` runs ``wrapper(handler)`` instead of
        its handler (built as before): e.g. to inject a fault in a test, or to observe
        what a stage receives.

        Parameters:
            name: the stage.
            wrapper: takes the built handler, returns the one to run.
        """
        build = self.stages[name].build if name in self.stages else None
        if build is None:
            raise ValueError(f"pipeline {self.name!r} has no stage {name!r}")

        def wrapped(context: StageContext) -> StageCallable:
            return wrapper(build(context))

        return self.with_stage(name, build=wrapped)

    # -- reading -----------------------------------------------------------------------

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The stages, in declaration order."""
        return tuple(self.stages)

    @property
    def entry_events(self) -> tuple[str, ...]:
        """Event types a stage consumes and no stage produces: what other services send."""
        produced = {t for spec in self.stages.values() for t in spec.produces}
        return tuple(
            name
            for name in self.events.names
            if name not in produced and any(name in s.consumes for s in self.stages.values())
        )

    @property
    def final_events(self) -> tuple[str, ...]:
        """Event types a stage produces and no stage consumes: the pipeline's results."""
        consumed = {t for spec in self.stages.values() for t in spec.consumes}
        return tuple(
            name
            for name in self.events.names
            if name not in consumed and any(name in s.produces for s in self.stages.values())
        )

    @property
    def transient_events(self) -> tuple[str, ...]:
        """Interim event types (tokens) the stages stream."""
        return tuple(spec.name for spec in self.events if spec.transient)

    def spec_of(self, event_type: str) -> EventSpec:
        """The registered spec of ``event_type`` (:class:`~ragbus.events.InvalidEvent`
        when unknown)."""
        return self.events.spec(event_type)

    def select(self, names: Iterable[str] | None) -> tuple[StageSpec, ...]:
        """The stages called ``names`` in declaration order (all for None); an unknown
        name is a ``ValueError`` naming the known ones."""
        if names is None:
            return tuple(self.stages.values())
        wanted = list(dict.fromkeys(names))
        unknown = [name for name in wanted if name not in self.stages]
        if unknown or not wanted:
            known = ", ".join(self.stages) or "none"
            raise ValueError(
                f"unknown stage {', '.join(unknown) or '(none)'} in pipeline {self.name!r}; "
                f"choose from {known} or all"
            )
        return tuple(spec for name, spec in self.stages.items() if name in wanted)


def _names(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _first_paragraph(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


def _is_async_callable(function: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(function, "__call__", None)  # noqa: B004 - an object with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _as_factory(function: Callable[..., Any]) -> StageFactory:
    """A factory for ``function``: itself when it is one, else one returning it."""
    if _is_async_callable(function):

        def build(context: StageContext) -> StageCallable:
            return cast(StageCallable, function)

        return build
    return cast(StageFactory, function)
