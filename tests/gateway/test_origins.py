"""What the gateway trusts of a browser's request: the ``Host`` it names (DNS rebinding),
the ``Origin`` of state-changing requests and WebSocket handshakes, the body's media
type; and what it tells: security headers on every response, no internals in a 503."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
import websockets
from starlette.applications import Starlette

from ragbus.bus.errors import BusError
from ragbus.gateway.hosts import host_allowed, host_name
from ragbus.gateway.state import gateway_state
from tests.gateway.conftest import QUESTION, AppFactory, ServeFactory, asgi_client, parse_sse

ROUTES = [
    ("GET", "/", None),
    ("GET", "/openapi.json", None),
    ("GET", "/metrics", None),
    ("POST", "/v1/ask", {"question": QUESTION}),
    ("POST", "/v1/ask/stream", {"question": QUESTION}),
    ("POST", "/v1/events", {"question": QUESTION}),
]


def _ws(base: str) -> str:
    return base.replace("http://", "ws://") + "/v1/ws"


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_a_host_that_is_not_allowed_gets_421(
    http: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    rebound = await http.request(method, path, json=body, headers={"Host": "attacker.example:8000"})
    assert rebound.status_code == 421
    assert rebound.json()["error"] == "host_not_allowed"
    assert "RAGBUS_GATEWAY_ALLOWED_HOSTS" in rebound.json()["message"]


async def test_probes_answer_whatever_the_host(http: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/readyz"):
        assert (await http.get(path, headers={"Host": "10.1.2.3:8000"})).status_code == 200


async def test_allowed_hosts_are_configurable(make_app: AppFactory) -> None:
    app = await make_app(gateway_allowed_hosts=[".example.com"])
    async with asgi_client(app) as http:
        sub = await http.get("/openapi.json", headers={"Host": "api.example.com"})
        apex = await http.get("/openapi.json", headers={"Host": "example.com:443"})
        other = await http.get("/openapi.json", headers={"Host": "example.org"})
        local = await http.get("/openapi.json")
    assert sub.status_code == apex.status_code == 200
    assert other.status_code == local.status_code == 421


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:8000", "localhost"),
        ("LOCALHOST", "localhost"),
        ("[::1]:8000", "::1"),
        ("127.0.0.1", "127.0.0.1"),
        ("example.com.", "example.com"),
        ("", None),
        ("a/b", None),
        ("user@host", None),
        ("::1", None),
        ("host:port", None),
        ("[::1", None),
        ("[::1]x", None),
    ],
)
def test_host_names_are_read_strictly(header: str, name: str | None) -> None:
    assert host_name(header) == name


def test_host_patterns() -> None:
    assert host_allowed("::1", ["[::1]"]) and host_allowed("x", ["*"])
    assert host_allowed("a.b.example.com", [".example.com"])
    assert not host_allowed("badexample.com", [".example.com"])


async def test_a_request_without_a_valid_host_gets_400(app: Starlette) -> None:
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/openapi.json",
        "raw_path": b"/openapi.json",
        "query_string": b"",
        "headers": [(b"host", b"evil/path")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
        "http_version": "1.1",
        "root_path": "",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"] == "bad_host"


@pytest.mark.parametrize("path", ["/v1/ask", "/v1/ask/stream", "/v1/events"])
async def test_a_cross_site_post_is_refused_before_any_work(
    app: Starlette, http: httpx.AsyncClient, path: str
) -> None:
    published: list[object] = []
    client = gateway_state(app).client
    original = client.bus.publish

    async def recording(event: Any, **options: Any) -> None:
        published.append(event)
        await original(event, **options)

    client.bus.publish = recording  # type: ignore[method-assign]
    for origin in ("https://evil.example", "null", "http://localhost.evil.example"):
        response = await http.post(path, json={"question": QUESTION}, headers={"Origin": origin})
        assert response.status_code == 403, (origin, response.text)
        assert response.json()["error"] == "origin_not_allowed"
    assert published == []


async def test_same_host_listed_and_absent_origins_may_post(make_app: AppFactory) -> None:
    app = await make_app(cors_origins=["https://app.example"])
    async with asgi_client(app) as http:
        for headers in ({"Origin": "http://localhost"}, {"Origin": "https://app.example"}, {}):
            response = await http.post("/v1/events", json={"question": QUESTION}, headers=headers)
            assert response.status_code == 202, (headers, response.text)
        safe = await http.get("/openapi.json", headers={"Origin": "https://evil.example"})
    assert safe.status_code == 200


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_only_json_bodies_are_read(http: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"question": QUESTION}).encode()
    for path in ("/v1/ask", "/v1/ask/stream", "/v1/events"):
        response = await http.post(path, content=body, headers=headers)
        assert response.status_code == 415, (path, response.text)
        assert response.json()["error"] == "unsupported_media_type"
        assert "Content-Type: application/json" in response.json()["message"]
    charset = await http.post(
        "/v1/events", content=body, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert charset.status_code == 202


async def test_websocket_handshakes_check_origin_and_host(
    make_app: AppFactory, serve: ServeFactory
) -> None:
    base = await serve(await make_app())
    port = base.rsplit(":", 1)[1]
    refusals = [
        (_ws(base), {"Origin": "https://evil.example"}, 403, "origin_not_allowed"),
        (_ws(base), {"Origin": "null"}, 403, "origin_not_allowed"),
        # the name a rebinding page uses, resolved (here: by us) to this gateway
        (f"ws://attacker.example:{port}/v1/ws", {}, 421, "host_not_allowed"),
    ]
    for url, headers, status, error in refusals:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(
                url, additional_headers=headers, host="127.0.0.1", port=int(port)
            ):
                pass
        response = refused.value.response
        assert response.status_code == status, url
        assert json.loads(response.body)["error"] == error
    async with websockets.connect(_ws(base), origin=f"http://127.0.0.1:{port}") as socket:  # type: ignore[arg-type]
        await socket.send(json.dumps({"question": QUESTION}))
        while json.loads(await socket.recv())["type"] != "done":
            pass


async def test_the_chat_page_carries_security_headers(http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src 'sha256-" in policy and "style-src 'sha256-" in policy
    assert "unsafe-inline" not in policy and "connect-src 'self'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    error = await http.get("/v1/nothing")
    assert error.headers["x-content-type-options"] == "nosniff"
    assert error.headers["content-security-policy"].startswith("default-src 'none'")


SECRET_DETAIL = "amqp://ragbus:hunter2@broker.internal:5672/ channel 7 closed"


async def test_a_bus_failure_is_a_503_that_names_no_internals(
    app: Starlette, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = gateway_state(app).client

    async def refusing(*args: Any, **kwargs: Any) -> None:
        raise BusError(SECRET_DETAIL)

    client.bus.publish = refusing  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="ragbus.gateway"):
        ask = await http.post("/v1/ask", json={"question": QUESTION})
        event = await http.post("/v1/events", json={"question": QUESTION})
        stream = await http.post("/v1/ask/stream", json={"question": QUESTION})
    for response in (ask, event):
        assert response.status_code == 503
        assert response.json()["error"] == "unavailable"
    [frame] = [data for name, data in parse_sse(stream.text) if name == "error"]
    assert frame["error"] == "unavailable"
    for text in (ask.text, event.text, stream.text):
        assert "hunter2" not in text and "broker.internal" not in text and "channel" not in text
    assert caplog.text.count("broker.internal") == 3  # the reason is in the log instead
