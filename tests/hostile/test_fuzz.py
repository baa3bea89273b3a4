"""Property-based fuzzing of every door outside input comes through.

- The envelope decoder: any bytes give a valid :class:`Envelope` or
  :class:`InvalidEvent`, never another exception; a valid envelope re-encodes to itself.
- ``ragbus publish``'s reader: any text gives events or :class:`InvalidEvent`.
- The gateway's JSON routes: any body gives 2xx or 4xx with a JSON error body, never a
  500 (a 504 only when the body asked for a timeout); driven in process through
  httpx's ASGI transport for speed, and a few examples over a real socket.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from ragbus.bus.memory import MemoryBus
from ragbus.client import Client
from ragbus.config import Settings
from ragbus.events import Envelope, InvalidEvent
from ragbus.gateway import create_app
from ragbus.gateway.server import running, server_config
from ragbus.http_server import bound_port
from ragbus.pipelines.rag import pipeline as rag
from ragbus.publishing import parse_events
from tests.hostile.strategies import event_bodies, question_bodies, raw_bodies

T = TypeVar("T")

#: Hypothesis settings of the fuzzers: no example database written into the tree, no
#: deadline (a loaded 2-core machine is slow now and then).
FUZZ = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.slow
@FUZZ
@given(body=event_bodies)
def test_any_bytes_decode_to_an_envelope_or_invalid_event(body: bytes) -> None:
    try:
        envelope = rag.events.decode(body)
    except InvalidEvent as exc:
        assert str(exc)  # a reason, always
        return
    assert isinstance(envelope, Envelope)
    assert rag.events.decode(envelope.encode()) == envelope  # what it publishes, it reads


@FUZZ
@given(text=st.text(max_size=300) | raw_bodies.map(lambda raw: raw.decode("utf-8", "replace")))
def test_any_text_to_publish_gives_events_or_invalid_event(text: str) -> None:
    try:
        events = parse_events(text, rag)
    except InvalidEvent as exc:
        assert str(exc)
        return
    assert all(isinstance(event, Envelope) for event in events)


class _Gateway:
    """A gateway app on the memory bus, on its own event loop, for sync hypothesis tests."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = Client(settings, bus=MemoryBus(dlq_path=settings.dlq_path))
        self.app: Starlette = create_app(settings, self.client)
        self.run(self.client.open())

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.run(self.client.close())
        self.loop.close()


@pytest.fixture
def gateway(settings: Settings, tmp_path: Path) -> Iterator[_Gateway]:
    """The gateway with the limits that would turn fuzzing into counting 429s switched
    off (no rate limit), and a fast offline LM."""
    fuzz_settings = settings.model_copy(
        update={"gateway_rate_limit": "", "dlq_path": tmp_path / "dlq.sqlite3"}
    )
    opened = _Gateway(fuzz_settings)
    try:
        yield opened
    finally:
        opened.close()


JSON = {"Content-Type": "application/json"}


def _check(response: httpx.Response, body: bytes) -> None:
    """2xx, or 4xx with a JSON error body; 504 only for a body that asked for a timeout."""
    status = response.status_code
    if 200 <= status < 300:
        return
    asked_timeout = b'"timeout"' in body
    assert status < 500 or (status == 504 and asked_timeout), (status, response.text, body[:300])
    error = response.json()
    assert set(error) >= {"error", "message"} and error["message"], error


def _fuzz_routes(gateway: _Gateway, post: Callable[[str, bytes], Any]) -> Callable[..., None]:
    @FUZZ
    @given(path=st.sampled_from(["/v1/ask", "/v1/ask/stream"]), body=question_bodies)
    def questions(path: str, body: bytes) -> None:
        _check(gateway.run(post(path, body)), body)

    return questions


def test_any_body_to_the_ask_routes_gives_2xx_or_a_json_4xx(gateway: _Gateway) -> None:
    async def post(path: str, body: bytes) -> httpx.Response:
        transport = httpx.ASGITransport(app=gateway.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            return await http.post(path, content=body, headers=JSON, timeout=30)

    _fuzz_routes(gateway, post)()


def test_any_body_to_the_events_route_gives_2xx_or_a_json_4xx(gateway: _Gateway) -> None:
    async def post(body: bytes) -> httpx.Response:
        transport = httpx.ASGITransport(app=gateway.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            return await http.post("/v1/events", content=body, headers=JSON, timeout=30)

    @FUZZ
    @given(body=event_bodies)
    def events(body: bytes) -> None:
        response = gateway.run(post(body))
        _check(response, body)
        assert response.status_code in (202, 403, 422), (response.status_code, response.text)

    events()


@pytest.mark.slow
def test_bodies_over_a_real_socket_give_2xx_or_a_json_4xx(
    gateway: _Gateway, settings: Settings
) -> None:
    config = server_config(gateway.app, settings, host="127.0.0.1", port=0, lifespan="off")
    context = running(config)
    server = gateway.run(context.__aenter__())
    base = f"http://127.0.0.1:{bound_port(server)}"

    async def post(path: str, body: bytes) -> httpx.Response:
        async with httpx.AsyncClient(base_url=base, timeout=30, trust_env=False) as http:
            return await http.post(path, content=body, headers=JSON)

    try:

        @settings_for_socket
        @given(
            path=st.sampled_from(["/v1/ask", "/v1/ask/stream", "/v1/events"]),
            body=question_bodies | event_bodies,
        )
        def over_socket(path: str, body: bytes) -> None:
            _check(gateway.run(post(path, body)), body)

        over_socket()
    finally:
        gateway.run(context.__aexit__(None, None, None))


settings_for_socket = settings(FUZZ, max_examples=60)


def test_a_json_body_is_read_as_utf8_json_only() -> None:
    """The bytes behind a few of the hand-written cases, as the routes see them."""
    assert json.loads(b'{"question": "q"}') == {"question": "q"}
