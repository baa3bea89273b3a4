"""Hostile input over HTTP: every kind of bad request, body and WebSocket frame, sent to
a real ``ragbus serve`` process between good questions. Counted: every bad request
answered with its 4xx and a JSON error body (a bad frame with an ``error`` frame, the
connection kept), every good question answered, the gateway still up and no traceback
in its output."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.gateway.serve_process import Served, serving
from tests.hostile.inputs import bad_inputs

pytestmark = pytest.mark.slow

QUESTION = "How does ragbus handle a failed event?"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Served]:
    """``ragbus serve`` on the memory bus (no rate limit: each bad request must meet
    the check it is made for, not the limit), stopped with SIGTERM afterwards."""
    async with serving(
        tmp_path, RAGBUS_GATEWAY_RATE_LIMIT="", RAGBUS_CACHE_ENABLED="false"
    ) as served:
        yield served


def _ask_requests() -> list[tuple[str, dict[str, Any], int]]:
    """Bad requests to the ask routes: (name, request options, expected status)."""
    question = json.dumps({"question": QUESTION}).encode()
    bodies = {
        "not-json": (b"not json", 422),
        "empty": (b"", 422),
        "bad-utf8": (b'{"question": "\xff\xfe"}', 422),
        "deep-nesting": (b'{"question":' + b"[" * 20_000 + b"]" * 20_000 + b"}", 422),
        "array": (b'["q"]', 422),
        "string": (b'"q"', 422),
        "number": (b"42", 422),
        "nan": (b'{"question": "q", "k": NaN}', 422),
        "infinity": (b'{"question": "q", "timeout": 1e400}', 422),
        "huge-integer": (b'{"question": "q", "k": ' + b"9" * 5000 + b"}", 422),
        "lone-surrogate": (b'{"question": "\\ud800"}', 422),
        "duplicate-keys": (b'{"question": "a", "question": "b"}', 422),
        "missing-question": (b'{"k": 3}', 422),
        "over-long-question": (json.dumps({"question": "q" * 4001}).encode(), 422),
        "bad-k": (b'{"question": "q", "k": "many"}', 422),
        "extra-field": (b'{"question": "q", "colour": "red"}', 422),
        "too-long-a-wait": (b'{"question": "q", "timeout": 100000}', 422),
        "oversized": (json.dumps({"question": "q" * 70_000}).encode(), 413),
    }
    requests: list[tuple[str, dict[str, Any], int]] = [
        (name, {"content": body, "headers": JSON}, status)
        for name, (body, status) in bodies.items()
    ]
    requests += [
        ("text-plain", {"content": question, "headers": {"Content-Type": "text/plain"}}, 415),
        ("no-content-type", {"content": question}, 415),
        (
            "cross-site",
            {"content": question, "headers": {**JSON, "Origin": "https://evil.example"}},
            403,
        ),
        (
            "rebound-host",
            {"content": question, "headers": {**JSON, "Host": "attacker.example"}},
            421,
        ),
    ]
    return requests


def _assert_json_error(response: httpx.Response, status: int, name: str) -> None:
    assert response.status_code == status, (name, response.status_code, response.text[:300])
    body = response.json()
    assert body["error"] and body["message"], (name, body)


@pytest.mark.timeout(240)
async def test_every_bad_request_gets_its_4xx_and_good_ones_their_answers(
    gateway: Served,
) -> None:
    base, process = gateway.base, gateway.process
    refused = answered = 0
    async with httpx.AsyncClient(base_url=base, timeout=60, trust_env=False) as http:
        for bad in bad_inputs():
            if not bad.http_status:
                continue
            response = await http.post("/v1/events", content=bad.body, headers=JSON)
            _assert_json_error(response, bad.http_status, bad.name)
            refused += 1
            good = await http.post("/v1/events", json={"question": QUESTION})
            assert good.status_code == 202, good.text
        for path in ("/v1/ask", "/v1/ask/stream"):
            for name, options, status in _ask_requests():
                response = await http.post(path, **options)
                _assert_json_error(response, status, f"{path} {name}")
                refused += 1
            good = await http.post(path, json={"question": QUESTION})
            assert good.status_code == 200, good.text
            assert "answer" in good.text
            answered += 1
        assert (await http.get("/readyz")).status_code == 200
    assert process.returncode is None
    print(f"{refused} bad requests refused with their 4xx, {answered} good ones answered")


def _bad_frames() -> list[tuple[str, str | bytes, str]]:
    """Bad WebSocket frames: (name, frame, expected error code)."""
    return [
        ("not-json", "not json", "invalid_message"),
        ("binary-bad-utf8", b'{"question": "\xff"}', "invalid_message"),
        ("deep-nesting", "[" * 20_000, "invalid_message"),
        ("nan", '{"question": "q", "k": NaN}', "invalid_message"),
        ("lone-surrogate", '{"question": "\\ud800"}', "invalid_message"),
        ("duplicate-keys", '{"question": "a", "question": "b"}', "invalid_message"),
        ("array", "[1, 2]", "invalid_message"),
        ("over-long-question", json.dumps({"question": "q" * 4001}), "invalid_message"),
        (
            "oversized-in-bytes",
            json.dumps({"question": "€" * 30_000}, ensure_ascii=False),
            "invalid_message",
        ),
        (
            "someone-elses-session",
            json.dumps({"question": "q", "session_id": "s-guess"}),
            "unknown_session",
        ),
    ]


@pytest.mark.timeout(120)
async def test_every_bad_websocket_frame_gets_an_error_frame_and_the_chat_goes_on(
    gateway: Served,
) -> None:
    base, process = gateway.base, gateway.process
    url = base.replace("http://", "ws://") + "/v1/ws"
    async with websockets.connect(url, max_size=None) as chat:
        for name, frame, error in _bad_frames():
            await chat.send(frame)
            reply = json.loads(await asyncio.wait_for(chat.recv(), 30))
            assert reply["type"] == "error" and reply["error"] == error, (name, reply)
        await chat.send(json.dumps({"question": QUESTION}))
        async with asyncio.timeout(60):
            while (frame := json.loads(await chat.recv()))["type"] != "done":
                last = frame
    assert last["type"] == "answer" and last["answer"]
    assert process.returncode is None


async def test_the_gateway_wrote_no_traceback(
    gateway: Served,
) -> None:
    """Bad input at a fresh gateway, then stop it and read everything it wrote."""
    async with httpx.AsyncClient(base_url=gateway.base, timeout=60, trust_env=False) as http:
        for bad in bad_inputs():
            await http.post("/v1/events", content=bad.body, headers=JSON)
            await http.post("/v1/ask", content=bad.body, headers=JSON)
    code, output = await gateway.stop()
    assert code == 0 and "Traceback" not in output, output[-3000:]
