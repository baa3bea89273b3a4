"""The gateway's HTTP routes through ASGI, on every bus: answers, invalid input, events,
health, metrics, the page and the OpenAPI document."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from ragbus.config import Settings
from ragbus.gateway import create_app
from ragbus.gateway.state import gateway_state
from ragbus.payloads.rag import RagEvent
from tests.gateway.conftest import QUESTION, AppFactory, asgi_client, parse_sse


async def test_ask_returns_the_answer_with_its_sources(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/ask", json={"question": QUESTION, "k": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["question"] == QUESTION
    assert body["answer"].strip()
    assert body["model"] == "offline/extractive"
    assert len(body["sources"]) == 2
    assert any(source["doc_id"].startswith("failures.md") for source in body["sources"])
    assert uuid.UUID(body["id"]) != uuid.UUID(body["correlation_id"])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"question": ""}, "question: String should have at least 1 character"),
        ({"question": "   "}, "question: String should have at least 1 character"),
        ({"question": "q", "k": 0}, "k: Input should be greater than or equal to 1"),
        ({"question": "q", "k": 51}, "k: Input should be less than or equal to 50"),
        ({"question": "q", "colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"question": "q" * 4001}, "question: String should have at most 4000 characters"),
        ({"question": "q", "timeout": -1}, "timeout: Input should be greater than 0"),
        ({"question": "q", "timeout": 100_000}, "timeout: must be at most 300 seconds"),
        ({"k": 3}, "question: Field required"),
        (["q"], "expected a JSON object, got array"),
    ],
)
async def test_ask_refuses_invalid_input_with_the_reason(
    http: httpx.AsyncClient, body: object, reason: str
) -> None:
    response = await http.post("/v1/ask", json=body)
    assert response.status_code == 422
    assert response.json() == {"error": "invalid_request", "message": reason}


JSON_HEADERS = {"Content-Type": "application/json"}


async def test_ask_refuses_malformed_json(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/ask", content=b"{not json", headers=JSON_HEADERS)
    assert response.status_code == 422
    assert response.json()["message"].startswith("malformed JSON")
    empty = await http.post("/v1/ask", content=b"", headers=JSON_HEADERS)
    assert empty.status_code == 422


async def test_ask_answers_504_when_no_answer_comes_in_time(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/ask", json={"question": QUESTION, "timeout": 0.001})
    assert response.status_code == 504
    assert response.json()["error"] == "timeout"


async def test_a_body_over_the_limit_is_refused_with_413(make_app: AppFactory) -> None:
    app = await make_app(gateway_max_body_bytes=2048)
    big = {"question": "q", "history": [{"question": "q", "answer": "a" * 3000}]}

    async def chunks() -> object:
        yield b'{"question": "'
        for _ in range(40):
            yield b"x" * 100
        yield b'"}'

    async with asgi_client(app) as http:
        declared = await http.post("/v1/ask", json=big)
        streamed = await http.post(  # no Content-Length
            "/v1/ask", content=chunks(), headers=JSON_HEADERS
        )
    assert declared.status_code == streamed.status_code == 413
    assert declared.json()["error"] == "too_large"


async def test_the_stream_sends_stages_sources_tokens_answer_done(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post("/v1/ask/stream", json={"question": QUESTION})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    tokens = [data for name, data in events if name == "token"]
    assert len(tokens) > 2
    assert names == [
        "stage",
        "stage",
        "sources",
        "stage",
        *["token"] * len(tokens),
        "stage",
        "answer",
        "done",
    ]
    stages = [(data["stage"], data["status"]) for name, data in events if name == "stage"]
    assert stages == [
        ("retrieve", "started"),
        ("retrieve", "done"),
        ("generate", "started"),
        ("generate", "done"),
    ]
    [answer] = [data for name, data in events if name == "answer"]
    [sources] = [data["sources"] for name, data in events if name == "sources"]
    assert "".join(token["text"] for token in tokens) == answer["answer"]
    assert [token["sequence"] for token in tokens] == list(range(len(tokens)))
    assert [s["doc_id"] for s in sources] == [s["doc_id"] for s in answer["sources"]]
    assert all(source["excerpt"] for source in sources)


async def test_the_stream_reports_a_timeout_then_done(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/ask/stream", json={"question": QUESTION, "timeout": 0.001})
    events = parse_sse(response.text)
    assert [name for name, _ in events][-2:] == ["error", "done"]
    assert events[-2][1]["error"] == "timeout"


async def test_the_stream_refuses_invalid_input_before_streaming(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post("/v1/ask/stream", json={"question": "q", "k": "many"})
    assert response.status_code == 422
    assert (
        response.json()["message"]
        == "k: Input should be a valid integer, unable to parse string as an integer"
    )


async def test_events_are_published_for_other_services(
    app: Starlette, http: httpx.AsyncClient
) -> None:
    client = gateway_state(app).client
    answers = client.events([RagEvent.ANSWER_GENERATED])
    waiting = asyncio.ensure_future(anext(answers))
    await asyncio.sleep(0)  # let the follower register
    envelope = {"type": "query_received", "payload": {"question": QUESTION}}
    response = await http.post("/v1/events", json=envelope)
    assert response.status_code == 202, response.text
    accepted = response.json()
    question_id = uuid.UUID(accepted["id"])
    assert accepted == {
        "id": str(question_id),
        "type": "query_received",
        "correlation_id": str(question_id),
    }
    try:
        async with asyncio.timeout(20):
            answer = await waiting
            while answer.correlation_id != question_id:
                answer = await anext(answers)
    finally:
        waiting.cancel()
        with contextlib.suppress(BaseException):
            await waiting
        await answers.aclose()
    assert answer.payload["question"] == QUESTION

    bare = await http.post("/v1/events", json={"question": "What is a dead letter?"})
    assert bare.status_code == 202
    assert bare.json()["type"] == "query_received"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"type": "no_such_event", "payload": {}}, "unknown event type 'no_such_event'"),
        ({"type": "query_received", "payload": {"question": ""}}, "payload.question"),
        ({"question": "q", "k": 0}, "payload.k"),
        ([1, 2], "expected a JSON object"),
    ],
)
async def test_invalid_events_are_refused_with_the_reason(
    http: httpx.AsyncClient, body: object, reason: str
) -> None:
    response = await http.post("/v1/events", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_event"
    assert reason in response.json()["message"]


async def test_health_readiness_and_metrics(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json()["ok"] is True
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ok"] is True
    assert (await http.post("/v1/ask", json={"question": QUESTION})).status_code == 200
    metrics = await http.get("/metrics")
    assert metrics.status_code == 200
    assert 'ragbus_gateway_requests_total{route="/v1/ask",status="200"} 1.0' in metrics.text
    assert 'ragbus_processed_total{stage="generate"}' in metrics.text  # the in-process stages
    assert "ragbus_gateway_answer_seconds" in metrics.text
    streamed = await http.post("/v1/ask/stream", json={"question": QUESTION})
    assert streamed.status_code == 200
    metrics = await http.get("/metrics")
    assert "ragbus_gateway_first_token_seconds_count 1.0" in metrics.text
    assert "ragbus_gateway_tokens_caught_up_total 0.0" in metrics.text  # every token came


async def test_readiness_fails_while_the_bus_is_not_connected(
    gateway_settings: Settings,
) -> None:
    from ragbus.client import Client

    app = create_app(gateway_settings, Client(gateway_settings))  # never opened
    async with asgi_client(app) as http:
        ready = await http.get("/readyz")
        ask = await http.post("/v1/ask", json={"question": QUESTION})
    assert ready.status_code == 503 and ready.json()["ok"] is False
    assert ask.status_code == 503 and ask.json()["error"] == "unavailable"


async def test_the_chat_page_is_served(http: httpx.AsyncClient) -> None:
    response = await http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "v1/ask/stream" in response.text and "<form" in response.text


async def test_the_openapi_document_covers_every_route(
    app: Starlette, http: httpx.AsyncClient
) -> None:
    document = (await http.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    for route in app.routes:
        assert isinstance(route, Route | WebSocketRoute)
        assert route.path in paths, route.path
        methods = (
            {"get"}
            if isinstance(route, WebSocketRoute)
            else {method.lower() for method in route.methods or () if method != "HEAD"}
        )
        assert methods <= set(paths[route.path]), route.path
    schemas = document["components"]["schemas"]
    assert {"AskRequest", "AnswerBody", "ErrorBody", "ChatMessage", "Envelope"} <= set(schemas)
    assert schemas["AskRequest"]["properties"]["question"]["maxLength"] == 4000


async def test_unknown_paths_answer_json_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
