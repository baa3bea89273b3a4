"""OpenTelemetry traces across the bus: one question is one trace, whatever the processes.

The W3C trace context travels in the envelope's ``trace`` field (``traceparent``,
``tracestate``). Publishing an event is a ``send <event type>`` span (kind PRODUCER)
whose context the envelope carries; each stage's handling of an event is a
``process <stage>`` span (kind CONSUMER), the child of the producer's context read from
the envelope (or, for a producer that sets only the AMQP header ``traceparent``, from
that header); the LM call (``chat <model>``) and retrieval (``retrieve``) are children
of the stage's span. The gateway's HTTP server span (``POST /v1/ask``) is the root of a
question asked over HTTP, and it continues a ``traceparent`` the HTTP caller sends.

What is exported follows the standard ``OTEL_*`` environment variables
(:func:`configure`). With none set, no SDK is installed, and every hook here is one
check of a module flag: tracing costs nothing measurable (docs/BENCHMARKS.md). An
application that installs its own tracer provider (``trace.set_tracer_provider``)
before building its stages gets ragbus's spans in its provider.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ragbus import __version__
from ragbus.errors import ConfigurationError

if TYPE_CHECKING:
    from ragbus.events import Envelope

#: The instrumentation scope of ragbus's spans.
TRACER_NAME: Final = "ragbus"

#: The carrier keys ragbus reads from an AMQP message's headers when its envelope has no
#: ``trace``: what a foreign producer's AMQP instrumentation sets.
TRACE_HEADERS: Final = ("traceparent", "tracestate")

#: The exporters :func:`configure` knows, by their ``OTEL_TRACES_EXPORTER`` names.
EXPORTERS: Final = ("otlp", "console", "none")

# ragbus's tracer, with the provider it came from: a tracer is made once per provider
# (the API's proxy tracer would stay bound to the first provider it saw)
_tracer_of: tuple[trace.TracerProvider, trace.Tracer] | None = None


#: While no tracer provider is installed, how often :func:`enabled` looks again, in
#: seconds: looking costs an environment lookup, too much for every hook.
RECHECK_S: Final = 1.0

_on = False
_next_check = 0.0


def enabled() -> bool:
    """Whether spans are recorded: a tracer provider is installed (by :func:`configure`
    or by the application). Without one, ragbus's hooks do nothing at all. A provider
    the application installs is seen within :data:`RECHECK_S` (at once after
    :func:`refresh`)."""
    if _on:
        return True
    if time.monotonic() < _next_check:
        return False
    return refresh()


def refresh() -> bool:
    """Look now whether a tracer provider is installed; returns :func:`enabled`."""
    global _on, _next_check
    provider = trace.get_tracer_provider()
    _on = not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
    _next_check = time.monotonic() + RECHECK_S
    return _on


def _tracer() -> trace.Tracer:
    global _tracer_of
    provider = trace.get_tracer_provider()
    if _tracer_of is None or _tracer_of[0] is not provider:
        _tracer_of = (provider, provider.get_tracer(TRACER_NAME, __version__))
    return _tracer_of[1]


def exporters_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """The span exporters the ``OTEL_*`` variables ask for, by name (see :data:`EXPORTERS`).

    ``OTEL_SDK_DISABLED=true`` means none; else ``OTEL_TRACES_EXPORTER`` (comma-separated)
    when set; else ``otlp`` when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set; else none: tracing stays off.
    Raises :class:`~ragbus.errors.ConfigurationError` for an exporter it does not know.

    Parameters:
        environ: the environment (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if not named:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    names = [name.strip().lower() for name in named.split(",") if name.strip()]
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER: unknown exporter {', '.join(unknown)} "
            f"(ragbus knows {', '.join(EXPORTERS)})"
        )
    return [name for name in names if name != "none"]


def _otlp_protocol(env: Mapping[str, str]) -> str:
    return (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()


def configure(
    service_name: str, *, instance_id: str = "", environ: Mapping[str, str] | None = None
) -> bool:
    """Install an SDK tracer provider exporting as the ``OTEL_*`` variables say; returns
    whether one was installed. Does nothing when they ask for no exporter
    (:func:`exporters_from_env`) or a provider is already installed (the application's).

    The SDK itself reads the rest: ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``
    (the service name defaults to ``service_name``), ``OTEL_TRACES_SAMPLER`` and its
    argument, ``OTEL_BSP_*`` (batching: spans leave in the background, every
    ``OTEL_BSP_SCHEDULE_DELAY`` ms) and ``OTEL_EXPORTER_OTLP_*`` (endpoint, headers,
    timeout, compression). OTLP goes over HTTP/protobuf; asking for ``grpc`` is a
    :class:`~ragbus.errors.ConfigurationError`. The provider flushes at exit.

    Parameters:
        service_name: ``service.name`` unless ``OTEL_SERVICE_NAME`` sets one, e.g.
            ``ragbus-worker``.
        instance_id: ``service.instance.id``, e.g. the worker id (default: none).
        environ: the environment (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    names = exporters_from_env(env)
    if not names or refresh():
        return False
    # the SDK is imported only here, so a process without tracing never loads it
    from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    if instance_id:
        attributes[SERVICE_INSTANCE_ID] = instance_id
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in names:
        exporter: SpanExporter
        if name == "otlp":
            protocol = _otlp_protocol(env)
            if protocol != "http/protobuf":
                raise ConfigurationError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: ragbus exports OTLP over "
                    "http/protobuf (point OTEL_EXPORTER_OTLP_ENDPOINT at port 4318)"
                )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:  # stderr: a command's own output (an answer, JSON) stays clean on stdout
            exporter = ConsoleSpanExporter(out=sys.stderr)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return refresh()


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``, maybe ``tracestate``);
    empty without a recording span."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


def extract(
    trace_field: Mapping[str, str] | None, headers: Mapping[str, Any] | None = None
) -> otel_context.Context:
    """The context a producer sent: from the envelope's ``trace`` field, else from the
    ``traceparent``/``tracestate`` message headers; an empty context when neither holds a
    valid one (the consumer's span then starts a new trace).

    Parameters:
        trace_field: the envelope's ``trace``.
        headers: the transport's message headers, when it has any (default none).
    """
    if trace_field and "traceparent" in trace_field:
        return propagate.extract(trace_field)
    if headers:
        found = {key: text for key in TRACE_HEADERS if (text := _text(headers.get(key)))}
        if found:
            return propagate.extract(found)
    return otel_context.Context()


def _text(value: Any) -> str | None:
    # AMQP long strings may arrive as bytes, depending on how the producer encoded them
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


@contextmanager
def _sending(envelope: Envelope, system: str) -> Iterator[Envelope]:
    with _tracer().start_as_current_span(
        f"send {envelope.type}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": system,
            "messaging.operation.type": "send",
            "messaging.destination.name": envelope.type,
            "messaging.message.id": str(envelope.id),
            "messaging.message.conversation_id": str(envelope.correlation),
        },
    ):
        yield envelope.model_copy(update={"trace": carrier()})


def publishing(
    envelope: Envelope, system: str, *, transient: bool = False
) -> AbstractContextManager[Envelope]:
    """A ``send <type>`` span around publishing ``envelope``; yields the envelope with
    that span's context in its ``trace`` field. Without tracing, and for a transient
    event (one span per answer token would drown the trace), it yields ``envelope``
    unchanged (a producer's ``trace`` travels on as it came).

    Parameters:
        envelope: the event to publish.
        system: the ``messaging.system`` attribute (``rabbitmq``, ``ragbus-memory``).
        transient: whether it is a transient event (default False).
    """
    if transient or not enabled():
        return nullcontext(envelope)
    return _sending(envelope, system)


@contextmanager
def _processing(
    stage: str, envelope: Envelope, headers: Mapping[str, Any] | None
) -> Iterator[Span]:
    parent = extract(envelope.trace, headers)
    with _tracer().start_as_current_span(
        f"process {stage}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.operation.type": "process",
            "messaging.destination.name": envelope.type,
            "messaging.consumer.group.name": stage,
            "messaging.message.id": str(envelope.id),
            "messaging.message.conversation_id": str(envelope.correlation),
            "ragbus.stage": stage,
            "ragbus.attempt": envelope.attempt,
        },
        # the consumer classifies failures itself (failed()); an escaping exception is
        # a cancellation or a requeue, recorded as such below
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def processing(
    stage: str, envelope: Envelope, headers: Mapping[str, Any] | None = None
) -> AbstractContextManager[Span | None]:
    """A ``process <stage>`` span around a stage's handling of ``envelope``, the child
    of the producer's context (:func:`extract`); nothing without tracing.

    Parameters:
        stage: the stage's name.
        envelope: the event it handles.
        headers: the message's transport headers, when the bus has any (default none).
    """
    if not enabled():
        return nullcontext()
    return _processing(stage, envelope, headers)


def span(
    name: str, attributes: Mapping[str, str | int | float | bool] | None = None, *, client: bool
) -> AbstractContextManager[Span | None]:
    """A child span of the current one named ``name`` (an exception ends it with status
    error); nothing without tracing.

    Parameters:
        name: the span's name, e.g. ``chat openai/gpt-4o-mini``.
        attributes: its attributes (default none).
        client: a call to another service (kind CLIENT), else work in this process
            (kind INTERNAL).
    """
    if not enabled():
        return nullcontext()
    kind = SpanKind.CLIENT if client else SpanKind.INTERNAL
    return _tracer().start_as_current_span(name, kind=kind, attributes=attributes)


def failed(error: BaseException, failure_class: str) -> None:
    """Mark the current span failed with ``error`` and its failure class (``permanent``,
    ``transient``, ...) as ``error.type``; nothing without a recording span.

    Parameters:
        error: the exception.
        failure_class: how ragbus classified it.
    """
    current = trace.get_current_span()
    if not current.is_recording():
        return
    current.set_attribute("error.type", failure_class)
    current.record_exception(error)
    current.set_status(Status(StatusCode.ERROR, f"{failure_class}: {error}"))


def trace_ids() -> tuple[str, str] | None:
    """The current span's trace id and span id as hex (for log lines), or None."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
