"""The gateway served by a real uvicorn, on every bus: tokens really stream, a client that
leaves mid-stream leaves nothing behind (its answer stops being written within a second),
and WebSocket chat sessions carry history."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import websockets
from pydantic import SecretStr
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection

from ragbus.gateway.metrics import GatewayMetrics
from ragbus.gateway.state import gateway_state
from tests.gateway.conftest import QUESTION, AppFactory, Recorder, ServeFactory

#: Tasks of the gateway's own making, which must not outlive their request.
GATEWAY_TASKS = (
    "ragbus:sse",
    "ragbus:sse-watch",
    "ragbus:sse-ping",
    "ragbus:ws-read",
    "ragbus:ws-turn",
)


def _gateway_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name() in GATEWAY_TASKS]


def _open(metrics: GatewayMetrics, kind: str) -> float:
    """The gateway's open streams of ``kind``."""
    return float(metrics.streams.labels(kind)._value.get())


def _generating(app: Starlette) -> float:
    """Answers the app's in-process generate stage is working on."""
    runtime = gateway_state(app).client.runtime
    assert runtime is not None
    return float(runtime.metrics.in_flight.labels("generate")._value.get())


def _cancelled(app: Starlette) -> float:
    """Answers the app's in-process generate stage stopped: nobody waited for them."""
    runtime = gateway_state(app).client.runtime
    assert runtime is not None
    return float(runtime.cancellations.counter.labels("generate")._value.get())


async def _wait_until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_tokens_arrive_before_the_answer(make_app: AppFactory, serve: ServeFactory) -> None:
    base = await serve(await make_app(lm_latency_ms=400.0))
    seen: list[tuple[float, str]] = []
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        http.stream("POST", "/v1/ask/stream", json={"question": QUESTION}) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                seen.append((time.perf_counter(), line[6:].strip()))
    first_token = next(at for at, name in seen if name == "token")
    answer = next(at for at, name in seen if name == "answer")
    assert answer - first_token > 0.05  # streamed as written, not buffered until the end
    assert seen[-1][1] == "done"


async def test_a_client_leaving_mid_stream_leaves_nothing_behind(
    make_app: AppFactory, serve: ServeFactory
) -> None:
    app = await make_app(lm_latency_ms=2000.0)  # the answer's tokens take about 1 s
    base = await serve(app)
    baseline = set(asyncio.all_tasks())
    metrics = gateway_state(app).metrics
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        async with http.stream("POST", "/v1/ask/stream", json={"question": QUESTION}) as response:
            async for line in response.aiter_lines():
                if line.startswith("event: token"):
                    break  # leave while the answer is being written
        assert _gateway_tasks()
    left = time.perf_counter()
    # The stream's tasks end at once, and the question is cancelled: the generate stage
    # stops writing the answer nobody waits for (the LM call is cancelled) within 1 s.
    await _wait_until(lambda: not _gateway_tasks() and _open(metrics, "sse") == 0)
    await _wait_until(lambda: _generating(app) == 0, timeout=5.0)
    assert time.perf_counter() - left < 1.0
    assert _cancelled(app) == 1
    await _wait_until(lambda: set(asyncio.all_tasks()) <= baseline, timeout=10.0)


async def _frames_until_done(socket: ClientConnection) -> list[dict[str, Any]]:
    frames = []
    async with asyncio.timeout(20):
        while True:
            frame = json.loads(await socket.recv())
            frames.append(frame)
            if frame["type"] == "done":
                return frames


def _ws(base: str) -> str:
    return base.replace("http://", "ws://") + "/v1/ws"


async def test_websocket_sessions_carry_history_to_the_generate_stage(
    make_app: AppFactory, serve: ServeFactory, recorder: Recorder
) -> None:
    base = await serve(await make_app())
    first_question, second_question = QUESTION, "What does a dead letter record?"
    async with websockets.connect(_ws(base)) as socket:
        await socket.send(json.dumps({"question": first_question}))
        first = await _frames_until_done(socket)
        session = first[-1]["session_id"]  # issued by the gateway
        await socket.send(json.dumps({"question": second_question, "session_id": session}))
        second = await _frames_until_done(socket)
        await socket.send(json.dumps({"question": first_question}))  # the same, implicitly
        third = await _frames_until_done(socket)
    [first_answer] = [frame["answer"] for frame in first if frame["type"] == "answer"]
    tokens = [frame["text"] for frame in second if frame["type"] == "token"]
    [second_answer] = [frame["answer"] for frame in second if frame["type"] == "answer"]
    assert "".join(tokens) == second_answer and len(tokens) > 1
    assert first[-1] == second[-1] == third[-1] == {"type": "done", "session_id": session}
    histories = [event.payload["history"] for event in recorder.events]
    first_turn = {"question": first_question, "answer": first_answer}
    assert histories == [
        [],
        [first_turn],
        [first_turn, {"question": second_question, "answer": second_answer}],
    ]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json", "malformed JSON"),
        ("[1, 2]", "expected a JSON object, got array"),
        ('{"session_id": "s"}', "question: Field required"),
        ('{"question": "q", "session_id": "bad id!"}', "session_id: String should match pattern"),
        ('{"question": "' + "q" * 70_000 + '"}', "the message is larger than 65536 bytes"),
    ],
)
async def test_bad_websocket_frames_get_an_error_frame_and_the_socket_stays(
    make_app: AppFactory, serve: ServeFactory, frame: str, reason: str
) -> None:
    base = await serve(await make_app())
    async with websockets.connect(_ws(base), max_size=None) as socket:
        await socket.send(frame)
        error = json.loads(await socket.recv())
        await socket.send(json.dumps({"question": QUESTION}))
        frames = await _frames_until_done(socket)
    assert error["type"] == "error" and error["error"] == "invalid_message"
    assert reason in error["message"]
    assert any(frame["type"] == "answer" for frame in frames)


async def test_websocket_auth_takes_a_header_or_a_query_token(
    make_app: AppFactory, serve: ServeFactory
) -> None:
    base = await serve(await make_app(api_token=SecretStr("tok")))
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(_ws(base)):
            pass
    assert refused.value.response.status_code == 403
    async with websockets.connect(_ws(base), additional_headers={"Authorization": "Bearer tok"}):
        pass
    async with websockets.connect(_ws(base) + "?access_token=tok") as socket:
        await socket.send(json.dumps({"question": QUESTION}))
        assert (await _frames_until_done(socket))[-1]["type"] == "done"


async def test_a_websocket_closed_mid_answer_leaves_nothing_behind(
    make_app: AppFactory, serve: ServeFactory
) -> None:
    app = await make_app(lm_latency_ms=2000.0)
    base = await serve(app)
    metrics = gateway_state(app).metrics
    baseline = set(asyncio.all_tasks())
    async with websockets.connect(_ws(base)) as socket:
        await socket.send(json.dumps({"question": QUESTION}))
        async with asyncio.timeout(10):
            while json.loads(await socket.recv())["type"] != "token":
                pass
    left = time.perf_counter()
    await _wait_until(lambda: not _gateway_tasks() and _open(metrics, "websocket") == 0)
    await _wait_until(lambda: _generating(app) == 0, timeout=5.0)
    assert time.perf_counter() - left < 1.0  # the answer nobody reads stops being written
    assert _cancelled(app) == 1
    await _wait_until(lambda: set(asyncio.all_tasks()) <= baseline, timeout=10.0)
