"""One question is one trace across processes: the gateway, a retrieve worker and a
generate worker export their spans (OTLP/HTTP) to a receiver the test runs, and the
spans share one trace id in the order the question took. A foreign producer's
``traceparent`` is continued; JSON log lines carry the event's fields."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator

import pytest

from tests.foreign import publish_foreign
from tests.gateway.conftest import QUESTION
from tests.lm_server import FakeLMServer
from tests.otlp_receiver import OTLPReceiver, ReceivedSpan, otlp_receiver
from tests.polling import wait_until
from tests.process.test_serve import free_port, gateway_process
from tests.process.workers import Workers, ragbus_command

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

#: SpanKind values of the OTLP protobuf.
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OTLPReceiver]:
    """An OTLP receiver that every process the test starts exports to (batches leave
    every 100 ms)."""
    with otlp_receiver() as running:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
        yield running


#: The spans of one question in the workers (the LM's is ``chat <model>``).
PIPELINE_SPANS = {
    "process retrieve",
    "retrieve",
    "send documents_retrieved",
    "process generate",
    "send answer_generated",
}


def complete(receiver: OTLPReceiver, trace_id: str, *more: str) -> bool:
    """Whether every span of a question (and ``more``) of ``trace_id`` has arrived: each
    process exports its spans in its own batches, as they end."""
    names = {span.name for span in receiver.received() if span.trace_id == trace_id}
    chat = any(name.startswith("chat ") for name in names)
    return chat and PIPELINE_SPANS.union(more) <= names


def only(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    matching = [span for span in spans if span.name == name]
    assert len(matching) == 1, f"{name}: {len(matching)} spans in {[s.name for s in spans]}"
    return matching[0]


def assert_pipeline_spans(spans: list[ReceivedSpan], parent: ReceivedSpan | str) -> None:
    """The spans of one question, from ``send query_received`` (whose parent is
    ``parent``: a span, or a foreign span id) to ``send answer_generated``."""
    parent_id = parent if isinstance(parent, str) else parent.span_id
    sent = only(spans, "send query_received")
    retrieve = only(spans, "process retrieve")
    retrieval = only(spans, "retrieve")
    handed_on = only(spans, "send documents_retrieved")
    generate = only(spans, "process generate")
    [chat] = [span for span in spans if span.name.startswith("chat ")]
    answered = only(spans, "send answer_generated")
    assert sent.parent_id == parent_id and sent.kind == PRODUCER
    assert retrieve.parent_id == sent.span_id and retrieve.kind == CONSUMER
    assert retrieval.parent_id == retrieve.span_id
    assert handed_on.parent_id == retrieve.span_id and handed_on.kind == PRODUCER
    assert generate.parent_id == handed_on.span_id and generate.kind == CONSUMER
    assert chat.parent_id == generate.span_id and chat.kind == CLIENT
    assert answered.parent_id == generate.span_id
    assert retrieve.attributes["ragbus.stage"] == "retrieve"
    assert (
        retrieve.attributes["messaging.message.conversation_id"]
        == (sent.attributes["messaging.message.conversation_id"])
    )


@pytest.mark.timeout(150)
async def test_a_question_through_the_gateway_is_one_trace_across_worker_processes(
    workers: Workers, receiver: OTLPReceiver
) -> None:
    await workers.start("retrieve", name="retrieve", cache_enabled=False)
    await workers.start("generate", name="generate", cache_enabled=False)
    caller_trace, caller_span = "5a1e0b3c9d2f4e6a8b7c6d5e4f3a2b1c", "1f2e3d4c5b6a7988"
    async with gateway_process(workers, free_port()) as (_, http):
        asked = await http.post("/v1/ask", json={"question": QUESTION, "k": 2})
        # an HTTP caller that traces sends its traceparent: the question joins its trace
        continued = await http.post(
            "/v1/ask",
            json={"question": QUESTION + " (traced caller)"},
            headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"},
        )
    assert asked.status_code == 200, asked.text
    assert continued.status_code == 200, continued.text

    def whole_trace() -> bool:
        roots = [span for span in receiver.named("POST /v1/ask") if span.parent_id == ""]
        return (
            bool(roots)
            and complete(receiver, roots[0].trace_id, "send query_received")
            and complete(receiver, caller_trace, "POST /v1/ask", "send query_received")
        )

    await wait_until(
        whole_trace, what="the spans of the question", timeout=20, report=workers.report
    )
    [caller_root] = receiver.named("POST /v1/ask", caller_trace)
    assert caller_root.parent_id == caller_span
    [root] = [span for span in receiver.named("POST /v1/ask") if span.trace_id != caller_trace]
    spans = [span for span in receiver.received() if span.trace_id == root.trace_id]
    assert root.parent_id == "" and root.kind == SERVER and root.service == "ragbus-gateway"
    assert_pipeline_spans(spans, root)
    # three processes, each named: the gateway and the two workers
    by_name = {span.name: span for span in spans}
    assert by_name["send query_received"].service == "ragbus-gateway"
    assert by_name["process retrieve"].resource["service.instance.id"] == "retrieve"
    assert by_name["process generate"].resource["service.instance.id"] == "generate"
    assert by_name["process generate"].service == "ragbus-worker"


@pytest.mark.timeout(120)
async def test_a_foreign_producers_traceparent_is_continued(
    workers: Workers, receiver: OTLPReceiver
) -> None:
    assert workers.namespace is not None
    await workers.start("all", name="worker", cache_enabled=False)
    foreign = {  # two producers in another language: trace id, parent span id
        "envelope": ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
        "header": ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
    }
    for where, (trace_id, span_id) in foreign.items():
        traceparent = f"00-{trace_id}-{span_id}-01"
        event: dict[str, object] = {
            "type": "query_received",
            "payload": {"question": f"{QUESTION} ({where})"},
        }
        if where == "envelope":
            event["trace"] = {"traceparent": traceparent, "tracestate": "vendor=1"}
        await publish_foreign(
            workers.namespace.url,
            workers.namespace.exchange,
            "query_received",
            json.dumps(event).encode(),
            headers={"traceparent": traceparent} if where == "header" else None,
        )

    # and `ragbus publish` starts a trace of its own, continued by the worker
    published = await workers.run("publish", json.dumps({"question": QUESTION}))
    assert published.code == 0, published.stderr
    [sent_id] = [json.loads(line)["id"] for line in published.stdout.splitlines()]

    def publish_span() -> ReceivedSpan | None:
        sent = receiver.named("send query_received")
        return next((s for s in sent if s.attributes["messaging.message.id"] == sent_id), None)

    def answered() -> bool:
        sent = publish_span()
        return (
            all(complete(receiver, trace) for trace, _ in foreign.values())
            and sent is not None
            and complete(receiver, sent.trace_id)
        )

    def report() -> str:
        names = sorted((span.trace_id, span.name) for span in receiver.received())
        return f"{workers.report()}\nspans received: {names}"

    await wait_until(answered, what="both foreign traces continued", timeout=20, report=report)
    sent = publish_span()
    assert sent is not None and sent.service == "ragbus-publish" and sent.parent_id == ""
    foreign["ragbus publish"] = (sent.trace_id, sent.span_id)
    for trace_id, span_id in foreign.values():
        spans = [span for span in receiver.received() if span.trace_id == trace_id]
        retrieve = only(spans, "process retrieve")
        assert retrieve.parent_id == span_id
        assert only(spans, "process generate").parent_id == (
            only(spans, "send documents_retrieved").span_id
        )


@pytest.mark.timeout(120)
async def test_json_log_lines_carry_the_event_and_its_failure_class(
    workers: Workers, lm: FakeLMServer
) -> None:
    assert workers.namespace is not None
    lm.set(mode="bad_request", times=1)  # the first generate call fails: permanent
    worker = await workers.start(
        name="worker",
        argv=ragbus_command("worker", "--port", "0", "--log-format", "json", "-v"),
        cache_enabled=False,
        lm_model="openai/test-model",
        lm_api_base=lm.api_base,
        lm_api_key="sk-test-secret-key",
    )
    event_id = str(uuid.uuid4())
    body = {"type": "query_received", "id": event_id, "payload": {"question": QUESTION}}
    for sent in (json.dumps(body).encode(), b"{not json"):  # an event, then garbage
        await publish_foreign(
            workers.namespace.url, workers.namespace.exchange, "query_received", sent
        )

    def records() -> list[dict[str, object]]:
        lines = [line for line in worker.log.splitlines() if line and not line.startswith("---")]
        return [json.loads(line) for line in lines]  # every line is one JSON object

    def failures() -> list[dict[str, object]]:
        return [record for record in records() if record.get("failure_class") == "permanent"]

    await wait_until(
        lambda: len(failures()) == 2, what="the failures' lines", timeout=20, report=workers.report
    )
    [failure] = [record for record in failures() if "correlation_id" in record]
    assert failure["level"] == "WARNING"
    assert failure["correlation_id"] == event_id  # the question's id: its correlation
    assert failure["stage"] == "generate" and failure["attempt"] == 1
    assert failure["worker_id"] == "worker"
    assert failure["event_type"] == "documents_retrieved" and failure["event_id"] != event_id
    [invalid] = [record for record in failures() if "correlation_id" not in record]
    assert "invalid message" in str(invalid["message"]) and invalid["stage"] == "retrieve"
    assert invalid["worker_id"] == "worker"
    assert "sk-test-secret-key" not in worker.log
    ready = records()[0]
    assert "/healthz and /metrics" in str(ready["message"]) and "correlation_id" not in ready


@pytest.mark.timeout(120)
async def test_the_gateways_log_lines_are_json_uvicorns_included(workers: Workers) -> None:
    port = free_port()
    async with gateway_process(workers, port, "--log-format", "json") as (gateway, _):
        # a request uvicorn refuses before the app sees it: uvicorn logs a warning
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"GARBAGE \x00 nonsense\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 400")

        def logged() -> bool:
            return '"uvicorn.error"' in gateway.log

        await wait_until(logged, what="uvicorn's warning", report=workers.report)
    lines = [line for line in gateway.log.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    [refused] = [record for record in records if record["logger"] == "uvicorn.error"]
    assert refused["level"] == "WARNING" and "Invalid HTTP request" in refused["message"]
    others = [line for line in gateway.log.splitlines() if not line.startswith("{")]
    assert all(line.startswith(("--- start", "ragbus gateway on")) for line in others), others
