"""Backpressure at the front door, on every bus: when the pipeline's queues are full, an
ask or a published event gets 429 with ``Retry-After`` and a JSON body, a stream an
``error`` frame, and the Python client a ``QueueFullError`` to act on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette

from ragbus.client import Client
from ragbus.config import Settings
from ragbus.errors import QueueFullError
from ragbus.events import utc_now
from ragbus.gateway import create_app
from ragbus.gateway.progress import question_frames
from ragbus.gateway.state import gateway_state
from ragbus.pipelines.rag import RETRIEVE
from ragbus.pipelines.rag import pipeline as rag
from tests.conftest import BusFactory
from tests.gateway.conftest import QUESTION, asgi_client

BOUND = 2


@pytest.fixture
async def full(
    make_bus: BusFactory, gateway_settings: Settings
) -> AsyncIterator[tuple[Client, Starlette]]:
    """A client running the pipeline whose retrieve stage is paused and its queue full,
    and the gateway on it."""
    settings = gateway_settings.model_copy(update={"gateway_rate_limit": ""})
    bus = make_bus(queue_max_length=BOUND, queue_full_wait_s=0.2)
    client = Client(settings, app=rag, bus=bus, run_pipeline=True)
    await client.open()
    try:
        await bus.pause(RETRIEVE)
        with contextlib.suppress(QueueFullError):
            for _ in range(BOUND + 2):  # a quorum queue takes one more than its bound
                query = client.event({"question": QUESTION}, deadline=utc_now())
                await client.publish(query)
        yield client, create_app(settings, client)
    finally:
        await client.close()


async def test_an_ask_gets_429_with_retry_after(full: tuple[Client, Starlette]) -> None:
    _, app = full
    async with asgi_client(app) as http:
        response = await http.post("/v1/ask", json={"question": QUESTION, "timeout": 5})
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["error"] == "queue_full"
    assert body["retry_after"] == int(response.headers["retry-after"])
    assert "capacity" in body["message"]


async def test_a_published_event_gets_429(full: tuple[Client, Starlette]) -> None:
    _, app = full
    async with asgi_client(app) as http:
        response = await http.post("/v1/events", json={"question": QUESTION})
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "queue_full"
    assert "retry-after" in response.headers


async def test_a_stream_is_refused_with_429_before_it_starts(
    full: tuple[Client, Starlette],
) -> None:
    _, app = full
    async with asgi_client(app) as http:
        response = await http.post("/v1/ask/stream", json={"question": QUESTION, "timeout": 5})
        assert response.status_code == 429, response.text
        assert response.json()["error"] == "queue_full"
        assert int(response.headers["retry-after"]) >= 1
        assert len(gateway_state(app).admission.streams) == 0  # its slot is free again


async def test_a_websocket_question_gets_a_queue_full_error_frame(
    full: tuple[Client, Starlette],
) -> None:
    client, _ = full
    frames = [frame async for frame in question_frames(client, QUESTION, timeout=5)]
    assert [name for name, _ in frames] == ["error"]
    error = frames[0][1]
    assert error["error"] == "queue_full" and error["retry_after"] >= 1


async def test_the_client_raises_queue_full_and_succeeds_once_there_is_room(
    full: tuple[Client, Starlette],
) -> None:
    client, _ = full
    with pytest.raises(QueueFullError) as refused:
        await client.ask(QUESTION, timeout=5)
    assert refused.value.retry_after is not None
    await client.bus.resume(RETRIEVE)
    answer = await client.ask(QUESTION, timeout=30)
    assert answer.text
