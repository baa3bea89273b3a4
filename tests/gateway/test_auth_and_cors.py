"""Bearer-token auth (on and off) and CORS."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tests.gateway.conftest import QUESTION, AppFactory, asgi_client

TOKEN = "s3cret-token"

PROTECTED = [
    ("POST", "/v1/ask", {"question": QUESTION}),
    ("POST", "/v1/ask/stream", {"question": QUESTION}),
    ("POST", "/v1/events", {"question": QUESTION}),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
async def test_with_a_token_set_api_routes_need_it(
    make_app: AppFactory, method: str, path: str, body: object
) -> None:
    app = await make_app(api_token=SecretStr(TOKEN))
    async with asgi_client(app) as http:
        missing = await http.request(method, path, json=body)
        wrong = await http.request(
            method, path, json=body, headers={"Authorization": "Bearer nope"}
        )
        basic = await http.request(method, path, json=body, headers={"Authorization": TOKEN})
        right = await http.request(
            method, path, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    for refused in (missing, wrong, basic):
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized"
        assert refused.headers["www-authenticate"] == "Bearer"
    assert right.status_code in (200, 202), right.text


async def test_health_readiness_and_the_page_need_no_token(make_app: AppFactory) -> None:
    app = await make_app(api_token=SecretStr(TOKEN))
    async with asgi_client(app) as http:
        for path in ("/healthz", "/readyz", "/"):
            assert (await http.get(path)).status_code == 200, path


async def test_without_a_token_set_no_route_asks_for_one(make_app: AppFactory) -> None:
    app = await make_app()
    async with asgi_client(app) as http:
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/openapi.json")).status_code == 200
        answer = await http.post("/v1/ask", json={"question": QUESTION})
    assert answer.status_code == 200


async def test_cors_allows_the_configured_origins_even_with_auth(make_app: AppFactory) -> None:
    app = await make_app(cors_origins=["https://app.example"], api_token=SecretStr(TOKEN))
    preflight_headers = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with asgi_client(app) as http:
        preflight = await http.options("/v1/ask", headers=preflight_headers)
        other = await http.options(
            "/v1/ask", headers={**preflight_headers, "Origin": "https://evil.example"}
        )
        actual = await http.get("/healthz", headers={"Origin": "https://app.example"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert other.status_code == 400
    assert actual.headers["access-control-allow-origin"] == "https://app.example"


async def test_without_cors_origins_no_cors_headers_are_sent(make_app: AppFactory) -> None:
    app = await make_app()
    async with asgi_client(app) as http:
        response = await http.get("/healthz", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers
