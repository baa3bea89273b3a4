"""One question is one trace on both buses: a client's question, and a foreign
producer's ``traceparent`` continued through the stages (spans recorded in memory)."""

from __future__ import annotations

import json

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ragbus.client import Client
from ragbus.config import Settings
from ragbus.pipelines.rag import pipeline as rag
from tests.conftest import BusFactory
from tests.foreign import publish_raw
from tests.polling import wait_until
from tests.tracing import hex_id, of_trace, parent_of, spans

__all__ = ["spans"]  # the fixture

QUESTION = "How does ragbus handle a failed event?"

#: Each span of a question and the span it hangs from ("" for the root), on one bus.
PARENTS = {
    "send query_received": "",
    "process retrieve": "send query_received",
    "retrieve": "process retrieve",
    "send documents_retrieved": "process retrieve",
    "process generate": "send documents_retrieved",
    "chat offline/extractive": "process generate",
    "send answer_generated": "process generate",
}


async def test_a_clients_question_is_one_trace(
    make_bus: BusFactory, settings: Settings, spans: InMemorySpanExporter
) -> None:
    async with Client(settings, app=rag, bus=make_bus(), run_pipeline=True) as client:
        answer = await client.ask(QUESTION, timeout=30)
    first = next(s for s in spans.get_finished_spans() if s.name == "send query_received")
    assert first.context is not None
    recorded = of_trace(spans, hex_id(first.context.trace_id, 32))
    ids = {hex_id(span.context.span_id, 16): span.name for span in recorded if span.context}
    assert {span.name: ids.get(parent_of(span), "") for span in recorded} == PARENTS
    process = next(span for span in recorded if span.name == "process generate")
    assert process.kind is SpanKind.CONSUMER and process.attributes is not None
    assert process.attributes["messaging.message.conversation_id"] == str(answer.query.correlation)


async def test_a_foreign_traceparent_is_continued(
    make_bus: BusFactory, settings: Settings, spans: InMemorySpanExporter
) -> None:
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    body = {
        "type": "query_received",
        "payload": {"question": QUESTION},
        "trace": {"traceparent": f"00-{trace_id}-{parent}-01"},
    }
    async with Client(settings, app=rag, bus=make_bus(), run_pipeline=True) as client:
        await publish_raw(client.bus, json.dumps(body).encode(), "query_received")

        def answered() -> bool:
            return any(s.name == "send answer_generated" for s in of_trace(spans, trace_id))

        await wait_until(answered, what="the foreign trace's answer", timeout=20)
    recorded = {span.name: span for span in of_trace(spans, trace_id)}
    assert parent_of(recorded["process retrieve"]) == parent
    assert set(recorded) == set(PARENTS) - {"send query_received"}
