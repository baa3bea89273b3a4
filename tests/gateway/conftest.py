"""Gateway fixtures: a client on each bus running the pipeline in process, the gateway app
on it, an HTTP client through ASGI, and the app served by a real uvicorn."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from ragbus.bus.base import emitter
from ragbus.client import Client
from ragbus.config import Settings
from ragbus.events import Envelope
from ragbus.gateway import create_app
from ragbus.gateway.server import running, server_config
from ragbus.ops_http import bound_port
from ragbus.pipelines.rag import GENERATE, rag_pipeline
from ragbus.runtime.stage import Stage
from tests.conftest import BusFactory

#: A question the bundled corpus answers.
QUESTION = "How does ragbus handle a failed event?"


@dataclass
class Recorder:
    """The events the generate stage received."""

    events: list[Envelope] = field(default_factory=list)

    def wrap(self, stage: Stage) -> Stage:
        """``stage`` with a handler that records each event before handling it."""
        handler = stage.handler

        async def recording(event: Envelope) -> list[Envelope]:
            self.events.append(event)
            return await handler(event)

        return dataclasses.replace(stage, handler=recording)


@pytest.fixture
def gateway_settings(settings: Settings) -> Settings:
    """Settings for gateway tests: no result cache, so every answer streams its tokens."""
    return settings.model_copy(update={"cache_enabled": False, "lm_latency_ms": 20.0})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


ClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_client(
    make_bus: BusFactory, gateway_settings: Settings, recorder: Recorder
) -> AsyncIterator[ClientFactory]:
    """Opens clients on a bus of each kind that run the pipeline in process, streaming
    answer tokens; the generate stage records what it receives. Closed after the test."""
    opened: list[Client] = []

    async def make(**overrides: Any) -> Client:
        settings = gateway_settings.model_copy(update=overrides)
        bus = make_bus()
        stages = [
            recorder.wrap(stage) if stage.name == GENERATE else stage
            for stage in rag_pipeline(settings, emit=emitter(bus))
        ]
        client = Client(settings, bus=bus, run_pipeline=True, stages=stages, follow_tokens=True)
        await client.open()
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.close()


AppFactory = Callable[..., Awaitable[Starlette]]


@pytest.fixture
def make_app(make_client: ClientFactory, gateway_settings: Settings) -> AppFactory:
    """Builds the gateway app on a fresh client; keyword arguments override settings."""

    async def make(**overrides: Any) -> Starlette:
        settings = gateway_settings.model_copy(update=overrides)
        return create_app(settings, await make_client(**overrides))

    return make


@pytest.fixture
async def app(make_app: AppFactory) -> Starlette:
    """The gateway app with default settings (no auth, no CORS)."""
    return await make_app()


def asgi_client(app: Starlette, **options: Any) -> httpx.AsyncClient:
    """An HTTP client calling ``app`` in process (responses are buffered whole)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost", timeout=30, **options
    )


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as client:
        yield client


ServeFactory = Callable[[Starlette], Awaitable[str]]


@pytest.fixture
async def serve(gateway_settings: Settings) -> AsyncIterator[ServeFactory]:
    """Serves apps with a real uvicorn on 127.0.0.1 and a free port; returns the base URL.
    The servers stop after the test."""
    stops: list[Any] = []

    async def start(app: Starlette) -> str:
        config = server_config(app, gateway_settings, host="127.0.0.1", port=0, lifespan="off")
        context = running(config)
        server = await context.__aenter__()
        stops.append(context)
        return f"http://127.0.0.1:{bound_port(server)}"

    yield start
    for context in reversed(stops):
        await context.__aexit__(None, None, None)


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The events of a Server-Sent Events body, as (name, data)."""
    import json

    events = []
    for block in text.split("\n\n"):
        name, data = "message", ""
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
        if data:
            events.append((name, json.loads(data)))
    return events
