"""Trace context in envelopes and event fields in log lines, without I/O: spans go to an
in-memory exporter, log lines to a string."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ragbus.config.redaction import remember
from ragbus.errors import ConfigurationError
from ragbus.events import new_event
from ragbus.observability import event_context, tracing
from ragbus.observability.logs import LogFormat, formatter
from tests.tracing import spans

__all__ = ["spans"]  # the fixture

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def hex_ids(span: trace.Span | None) -> tuple[str, str]:
    assert span is not None
    context = span.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def test_without_a_provider_the_hooks_do_nothing() -> None:
    event = new_event("query_received", {"question": "why?"}).model_copy(
        update={"trace": {"traceparent": TRACEPARENT}}
    )
    assert not tracing.enabled()
    with tracing.publishing(event, "rabbitmq") as sent:
        assert sent is event  # the producer's context travels on as it came
    with tracing.processing("retrieve", event) as span:
        assert span is None
    with tracing.span("retrieve", client=False) as span:
        assert span is None


def test_publishing_puts_the_send_spans_context_in_the_envelope(
    spans: InMemorySpanExporter,
) -> None:
    event = new_event("query_received", {"question": "why?"})
    with tracing.publishing(event, "rabbitmq") as sent:
        sending = trace.get_current_span()
    assert sent.trace is not None and event.trace is None
    trace_id, span_id = hex_ids(sending)
    assert sent.trace["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
    [finished] = spans.get_finished_spans()
    assert finished.name == "send query_received" and finished.kind is trace.SpanKind.PRODUCER
    assert finished.attributes is not None
    assert finished.attributes["messaging.message.conversation_id"] == str(event.correlation)


def test_a_stage_continues_the_trace_its_event_carries(spans: InMemorySpanExporter) -> None:
    event = new_event("query_received", {"question": "why?"}).model_copy(
        update={"trace": {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}}
    )
    with tracing.processing("retrieve", event) as span:
        derived = event.derive("documents_retrieved", {"question": "why?", "passages": []})
        with tracing.publishing(derived, "rabbitmq") as sent:
            pass
    assert hex_ids(span)[0] == TRACE_ID
    process, send = sorted(spans.get_finished_spans(), key=lambda s: s.name)
    assert process.name == "process retrieve" and process.parent is not None
    assert format(process.parent.span_id, "016x") == PARENT_ID
    assert send.parent is not None and send.parent.span_id == process.context.span_id
    assert sent.trace is not None
    assert sent.trace["traceparent"].split("-")[1] == TRACE_ID
    assert sent.trace["tracestate"] == "vendor=1"


@pytest.mark.parametrize("value", [TRACEPARENT, TRACEPARENT.encode()])
def test_a_traceparent_header_is_read_when_the_envelope_has_none(value: str | bytes) -> None:
    context = tracing.extract(None, {"traceparent": value, "x-delivery-count": 2})
    parent = trace.get_current_span(context).get_span_context()
    assert format(parent.trace_id, "032x") == TRACE_ID and parent.is_remote


def test_the_envelopes_trace_wins_over_a_header() -> None:
    other = f"00-{'1' * 32}-{'2' * 16}-01"
    context = tracing.extract({"traceparent": TRACEPARENT}, {"traceparent": other})
    assert format(trace.get_current_span(context).get_span_context().trace_id, "032x") == TRACE_ID


@pytest.mark.parametrize("carrier", [None, {}, {"traceparent": "00-zz-bad-01"}])
def test_no_valid_context_starts_a_new_trace(carrier: dict[str, str] | None) -> None:
    context = tracing.extract(carrier, None)
    assert not trace.get_current_span(context).get_span_context().is_valid


def test_failed_marks_the_span_with_the_failure_class(spans: InMemorySpanExporter) -> None:
    event = new_event("query_received", {"question": "why?"})
    with event_context.observe("retrieve", event, "w1"):
        event_context.note_failure(ValueError("bad"), "permanent")
    [span] = spans.get_finished_spans()
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "permanent"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console, none"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
    ],
)
def test_the_otel_variables_choose_the_exporters(
    environ: dict[str, str], expected: list[str]
) -> None:
    assert tracing.exporters_from_env(environ) == expected


def test_an_exporter_or_protocol_ragbus_lacks_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown exporter zipkin"):
        tracing.exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
    grpc = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    with pytest.raises(ConfigurationError, match="http/protobuf"):
        tracing.configure("ragbus-test", environ=grpc)
    assert not tracing.enabled()


def log_line(log_format: LogFormat, emit: object = None) -> str:
    """What one warning (with an exception) logged inside an event's handling looks like."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(event_context.EventFieldsFilter())
    logger = logging.getLogger("ragbus.test.observability")
    logger.addHandler(handler)
    logger.propagate = False
    event = new_event("query_received", {"question": "why?"}).model_copy(update={"attempt": 2})
    try:
        with event_context.handling("retrieve", event, "host:1"):
            event_context.note_failure(RuntimeError("x"), "transient")
            try:
                raise RuntimeError("cannot reach amqp://u:hunter22@broker/ (token s3cr3t-token)")
            except RuntimeError:
                logger.warning("attempt %d failed", 2, exc_info=True)
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_json_log_lines_carry_the_event_fields_and_stay_redacted() -> None:
    remember(["s3cr3t-token"])
    first, second = (json.loads(line) for line in log_line(LogFormat.JSON).splitlines())
    assert first["message"] == "attempt 2 failed" and first["level"] == "WARNING"
    assert first["stage"] == "retrieve" and first["attempt"] == 2
    assert first["worker_id"] == "host:1" and first["failure_class"] == "transient"
    assert first["correlation_id"] == first["event_id"]  # an originating event
    assert "hunter22" not in first["exc_info"] and "s3cr3t-token" not in first["exc_info"]
    assert "RuntimeError" in first["exc_info"]
    assert second["message"] == "outside" and "correlation_id" not in second


def test_text_log_lines_name_the_event_in_brackets() -> None:
    first, *_, last = log_line(LogFormat.TEXT).splitlines()
    assert first.endswith("failure_class=transient]") and "attempt=2 worker_id=host:1" in first
    assert " [correlation_id=" in first and "WARNING ragbus.test.observability:" in first
    assert last.endswith("outside")


def test_the_context_of_one_event_does_not_leak() -> None:
    event = new_event("query_received", {"question": "why?"})
    with event_context.handling("retrieve", event, "w"):
        assert event_context.current()["event_id"] == str(event.id)
    assert event_context.current() == {}


def test_with_tracing_a_log_line_names_its_trace(spans: InMemorySpanExporter) -> None:
    event = new_event("query_received", {"question": "why?"}).model_copy(
        update={"trace": {"traceparent": TRACEPARENT}}
    )
    record = logging.LogRecord("ragbus.x", logging.WARNING, __file__, 1, "m", None, None)
    with event_context.observe("retrieve", event, "w1"):
        current = trace.get_current_span()
        assert event_context.EventFieldsFilter().filter(record)
    assert (record.trace_id, record.span_id) == hex_ids(current)
    assert record.trace_id == TRACE_ID and record.correlation_id == str(event.correlation)
