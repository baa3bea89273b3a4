"""How much one client can take: caps on open asks, streams and WebSockets (429 with
``Retry-After`` beyond), a rate limit per token or address, WebSocket messages measured
in bytes, and chat sessions that only their owner can read."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from pydantic import SecretStr
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection

from ragbus.gateway.state import gateway_state
from tests.gateway.conftest import QUESTION, AppFactory, Recorder, ServeFactory

NO_RATE_LIMIT = {"gateway_rate_limit": ""}


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def _client(app: Starlette, address: str = "127.0.0.1", **options: Any) -> httpx.AsyncClient:
    """An in-process HTTP client that the app sees coming from ``address``."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 40000)),
        base_url="http://localhost",
        timeout=30,
        **options,
    )


def _assert_429(response: httpx.Response, *, mentions: str) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"] in ("too_many_requests", "rate_limited")
    assert mentions in response.json()["message"]


async def _hold_asks(app: Starlette, http: httpx.AsyncClient, count: int) -> list[Any]:
    """Start ``count`` slow asks and return their tasks once the gateway holds them."""
    asks = gateway_state(app).admission.asks
    held = len(asks)
    tasks = [
        asyncio.ensure_future(http.post("/v1/ask", json={"question": QUESTION}))
        for _ in range(count)
    ]
    await _until(lambda: len(asks) == held + count)
    return tasks


async def test_asks_beyond_the_cap_get_429_until_one_ends(make_app: AppFactory) -> None:
    app = await make_app(lm_latency_ms=1500.0, gateway_max_asks=2, **NO_RATE_LIMIT)
    async with _client(app) as http, _client(app, "10.0.0.9") as other:
        running = await _hold_asks(app, http, 2)
        _assert_429(
            await other.post("/v1/ask", json={"question": QUESTION}),
            mentions="RAGBUS_GATEWAY_MAX_ASKS",
        )
        assert all(response.status_code == 200 for response in await asyncio.gather(*running))
        assert len(gateway_state(app).admission.asks) == 0
        assert (await other.post("/v1/ask", json={"question": QUESTION})).status_code == 200


async def test_one_client_cannot_take_every_slot(make_app: AppFactory) -> None:
    app = await make_app(lm_latency_ms=1500.0, gateway_max_per_client=1, **NO_RATE_LIMIT)
    async with _client(app) as greedy, _client(app, "10.0.0.9") as other:
        running = await _hold_asks(app, greedy, 1)
        _assert_429(
            await greedy.post("/v1/ask", json={"question": QUESTION}),
            mentions="RAGBUS_GATEWAY_MAX_PER_CLIENT",
        )
        assert (await other.post("/v1/ask", json={"question": QUESTION})).status_code == 200
        await asyncio.gather(*running)


async def test_streams_beyond_the_cap_get_429_and_a_closed_stream_frees_its_slot(
    make_app: AppFactory, serve: ServeFactory
) -> None:
    app = await make_app(lm_latency_ms=2000.0, gateway_max_streams=1, **NO_RATE_LIMIT)
    base = await serve(app)
    streams = gateway_state(app).admission.streams
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        async with http.stream("POST", "/v1/ask/stream", json={"question": QUESTION}) as first:
            async for line in first.aiter_lines():
                if line.startswith("event:"):
                    break  # the stream is open
            second = await http.post("/v1/ask/stream", json={"question": QUESTION})
            _assert_429(second, mentions="RAGBUS_GATEWAY_MAX_STREAMS")
        await _until(lambda: len(streams) == 0)  # the client left: the slot is free
        third = await http.post("/v1/ask/stream", json={"question": QUESTION, "timeout": 0.01})
    assert third.status_code == 200


def _ws(base: str) -> str:
    return base.replace("http://", "ws://") + "/v1/ws"


async def _frames_until_done(socket: ClientConnection) -> list[dict[str, Any]]:
    frames = []
    async with asyncio.timeout(20):
        while True:
            frames.append(json.loads(await socket.recv()))
            if frames[-1]["type"] in ("done", "error"):
                return frames


async def test_websockets_beyond_the_cap_are_refused_with_429(
    make_app: AppFactory, serve: ServeFactory
) -> None:
    app = await make_app(gateway_max_websockets=1, **NO_RATE_LIMIT)
    base = await serve(app)
    sockets = gateway_state(app).admission.websockets
    async with websockets.connect(_ws(base)):
        await _until(lambda: len(sockets) == 1)
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(_ws(base)):
                pass
    response = refused.value.response
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    body = json.loads(response.body)
    assert body["error"] == "too_many_requests"
    assert "RAGBUS_GATEWAY_MAX_WEBSOCKETS" in body["message"]
    await _until(lambda: len(sockets) == 0)
    async with websockets.connect(_ws(base)) as again:
        await again.send(json.dumps({"question": QUESTION}))
        assert (await _frames_until_done(again))[-1]["type"] == "done"


async def test_the_rate_limit_counts_per_address_without_a_token(make_app: AppFactory) -> None:
    app = await make_app(gateway_rate_limit="3/minute")
    async with _client(app) as first, _client(app, "10.0.0.9") as second:
        for _ in range(3):  # invalid requests count as well
            assert (await first.post("/v1/ask", json={})).status_code == 422
        limited = await first.post("/v1/events", json={"question": QUESTION})
        _assert_429(limited, mentions="RAGBUS_GATEWAY_RATE_LIMIT")
        assert int(limited.headers["retry-after"]) <= 60
        assert (await second.post("/v1/ask", json={})).status_code == 422
        assert (await first.get("/healthz")).status_code == 200  # probes are not counted


async def test_the_rate_limit_counts_per_token(make_app: AppFactory) -> None:
    app = await make_app(gateway_rate_limit="2/minute", api_token=SecretStr("tok"))
    auth = {"Authorization": "Bearer tok"}
    async with (
        _client(app, headers=auth) as first,
        _client(app, "10.0.0.9", headers=auth) as second,
    ):
        assert (await first.post("/v1/ask", json={})).status_code == 422
        assert (await second.post("/v1/ask", json={})).status_code == 422
        _assert_429(await second.post("/v1/ask", json={}), mentions="RAGBUS_GATEWAY_RATE_LIMIT")
        _assert_429(await first.post("/v1/ask", json={}), mentions="RAGBUS_GATEWAY_RATE_LIMIT")


async def test_websocket_questions_count_against_the_rate_limit(
    make_app: AppFactory, serve: ServeFactory
) -> None:
    base = await serve(await make_app(gateway_rate_limit="2/minute"))
    async with websockets.connect(_ws(base)) as chat:  # the handshake counts: 1
        await chat.send(json.dumps({"question": QUESTION}))  # 2
        assert (await _frames_until_done(chat))[-1]["type"] == "done"
        for _ in range(2):  # refused, and the connection stays open
            await chat.send(json.dumps({"question": QUESTION}))
            [error] = await _frames_until_done(chat)
            assert error["type"] == "error" and error["error"] == "rate_limited"
            assert 1 <= error["retry_after"] <= 60
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(_ws(base)):
            pass
    assert refused.value.response.status_code == 429


async def test_websocket_messages_are_measured_in_bytes(
    make_app: AppFactory, serve: ServeFactory
) -> None:
    base = await serve(await make_app(gateway_max_body_bytes=4096))
    async with websockets.connect(_ws(base)) as chat:
        # 1,500 characters but 4,500 bytes of UTF-8
        await chat.send(json.dumps({"question": "€" * 1500}, ensure_ascii=False))
        [error] = await _frames_until_done(chat)
        assert error["error"] == "invalid_message"
        assert error["message"] == "the message is larger than 4096 bytes"
        await chat.send(json.dumps({"question": "é" * 1000}, ensure_ascii=False))  # 2,000 bytes
        assert (await _frames_until_done(chat))[-1]["type"] == "done"


async def _ask_on(chat: ClientConnection, **message: Any) -> list[dict[str, Any]]:
    await chat.send(json.dumps({"question": QUESTION, **message}))
    return await _frames_until_done(chat)


async def test_another_connection_cannot_read_a_session(
    make_app: AppFactory, serve: ServeFactory, recorder: Recorder
) -> None:
    app = await make_app()
    base = await serve(app)
    sessions = gateway_state(app).sessions
    async with websockets.connect(_ws(base)) as owner, websockets.connect(_ws(base)) as other:
        session = (await _ask_on(owner))[-1]["session_id"]
        assert len(recorder.events) == 1
        [refused] = await _ask_on(other, session_id=session)
        assert refused["error"] == "unknown_session"
        [guessed] = await _ask_on(other, session_id="s-" + uuid.uuid4().hex)
        assert guessed["error"] == "unknown_session"
        assert len(recorder.events) == 1  # neither question was asked
        own = (await _ask_on(other))[-1]["session_id"]
        assert own != session
        assert (await _ask_on(owner, session_id=session))[-1]["session_id"] == session
    histories = [len(event.payload["history"]) for event in recorder.events]
    assert histories == [0, 0, 1]  # the other connection's question carried no history
    await _until(lambda: len(sessions) == 0)  # no one may continue them: forgotten


async def test_with_a_token_a_session_continues_on_a_new_connection(
    make_app: AppFactory, serve: ServeFactory, recorder: Recorder
) -> None:
    base = await serve(await make_app(api_token=SecretStr("tok")))
    url = _ws(base) + "?access_token=tok"
    async with websockets.connect(url) as first:
        session = (await _ask_on(first))[-1]["session_id"]
    async with websockets.connect(url) as second:
        assert (await _ask_on(second, session_id=session))[-1]["session_id"] == session
    assert [len(event.payload["history"]) for event in recorder.events] == [0, 1]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("bus_kind", ["memory"])
async def test_a_rate_limit_storage_that_fails_lets_requests_through(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    storage = SecretStr(f"async+redis://127.0.0.1:{_closed_port()}/0")
    app = await make_app(gateway_rate_limit="1/minute", gateway_rate_limit_storage=storage)
    with caplog.at_level(logging.WARNING, logger="ragbus.gateway"):
        async with _client(app) as http:
            statuses = [(await http.post("/v1/ask", json={})).status_code for _ in range(3)]
    assert statuses == [422, 422, 422]
    assert caplog.text.count("rate limits not enforced") == 1


@pytest.mark.redis
@pytest.mark.parametrize("bus_kind", ["memory"])
async def test_gateways_share_a_rate_limit_through_redis(
    make_app: AppFactory, redis_url: str
) -> None:
    namespace = f"test-{uuid.uuid4().hex[:10]}"
    storage = SecretStr("async+" + redis_url)
    options = {
        "gateway_rate_limit": "2/minute",
        "gateway_rate_limit_storage": storage,
        "cache_namespace": namespace,
    }
    apps = [await make_app(**options), await make_app(**options)]
    try:
        async with _client(apps[0]) as one, _client(apps[1]) as two:
            assert (await one.post("/v1/ask", json={})).status_code == 422
            assert (await two.post("/v1/ask", json={})).status_code == 422
            _assert_429(await one.post("/v1/ask", json={}), mentions="RAGBUS_GATEWAY_RATE_LIMIT")
    finally:
        await _delete_keys(redis_url, f"{namespace}:*")


async def _delete_keys(redis_url: str, pattern: str) -> None:
    """Delete this test's keys (and only those) from the shared Redis."""
    client: Any = aioredis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=pattern)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
