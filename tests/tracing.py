"""Recording ragbus's spans in memory, for one test: no exporter, no network."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ragbus.observability import tracing


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """A tracer provider for this test only, recording every span into memory; tracing
    is off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # the API lets a process set its provider once; a test sets it for itself only
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    assert tracing.refresh()
    yield exporter
    monkeypatch.undo()
    assert not tracing.refresh()
    provider.shutdown()


def hex_id(number: int, digits: int) -> str:
    """A trace id (32 digits) or span id (16) as W3C writes it."""
    return format(number, f"0{digits}x")


def of_trace(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    """The finished spans of ``trace_id`` (hex)."""
    return [
        span
        for span in exporter.get_finished_spans()
        if span.context is not None and hex_id(span.context.trace_id, 32) == trace_id
    ]


def parent_of(span: ReadableSpan) -> str:
    """The hex id of ``span``'s parent ("" for a root)."""
    return "" if span.parent is None else hex_id(span.parent.span_id, 16)
