"""``/v1/status`` and ``/asyncapi.json`` of the gateway, on both buses."""

from __future__ import annotations

import httpx
import pytest

from ragbus.asyncapi import asyncapi_document
from ragbus.status.model import RUNNING, PipelineStatus
from tests.gateway.conftest import QUESTION, AppFactory, asgi_client


async def test_status_shows_the_stages_the_gateway_runs(
    make_app: AppFactory, bus_kind: str
) -> None:
    app = await make_app(heartbeat_interval_s=0.2)
    async with asgi_client(app) as http:
        asked = await http.post("/v1/ask", json={"question": QUESTION})
        assert asked.status_code == 200, asked.text
        response = await http.get("/v1/status")
    assert response.status_code == 200, response.text
    status = PipelineStatus.model_validate(response.json())
    assert status.app == "rag" and status.bus == bus_kind
    assert [row.name for row in status.stages] == ["retrieve", "generate"]
    for row in status.stages:
        assert row.state == RUNNING and row.breaker == "closed"
        assert row.processed == 1 and row.in_flight == 0
        assert row.queue_depth == 0 and row.consumers is not None and row.consumers >= 1
        assert row.concurrency_limit > 0
        assert set(row.dead_letters) == {"invalid", "failed", "expired", "delivery_limit"}
        assert set(row.failed) == {"permanent", "transient", "breaker_open"}
    assert status.stage("generate").dependency == "lm"
    assert len(status.workers) == 1


async def test_the_asyncapi_document_is_served(http: httpx.AsyncClient, app: object) -> None:
    response = await http.get("/asyncapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["asyncapi"] == "3.0.0"
    assert document == asyncapi_document(
        app.state.gateway.client.app,  # type: ignore[attr-defined]
        exchange=app.state.gateway.settings.exchange,  # type: ignore[attr-defined]
        queue_prefix=app.state.gateway.settings.queue_prefix,  # type: ignore[attr-defined]
        amqp_url=app.state.gateway.settings.amqp_url.get_secret_value(),  # type: ignore[attr-defined]
    )


async def test_status_is_a_503_with_no_internals_when_the_bus_cannot_be_asked(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await make_app(heartbeat_interval_s=0.2)

    async def broken(stage: str) -> None:
        raise ConnectionResetError("broker-7.internal:5672 reset the connection")

    monkeypatch.setattr(app.state.gateway.client.bus, "queue_stats", broken)
    async with asgi_client(app) as http:
        response = await http.get("/v1/status")
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "unavailable" and "broker-7" not in body["message"]
