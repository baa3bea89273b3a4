"""A small OpenAI-compatible chat server for tests, answering in DSPy's adapter format.

It can be told to fail with 500, to reject with 400, to answer 429 with
``Retry-After``, to hang, or to answer slowly, for a number of calls or until told
otherwise; it counts the calls it receives, and notes each call's time and question.
It runs in a thread with its own event loop, so it keeps answering whatever the test's
loop is doing, and processes the test starts can reach it too.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

OUTPUT_FIELDS = re.compile(r"Your output fields are:\n(.*?)\n(?:All interactions|\n)", re.S)
FIELD_NAME = re.compile(r"`(\w+)`")
QUESTION = re.compile(r"\[\[ ## question ## \]\]\n(.*?)(?:\n\n|$)", re.S)
TEXTS = re.compile(r"\[\[ ## texts ## \]\]\n(.*?)(?:\n\n|$)", re.S)

#: What the server reads in every text of an analysis request (``texts -> analyses``).
NEUTRAL_ANALYSIS = {"sentiment": "neutral", "score": 0.0, "topics": ["test"], "entities": []}


@dataclass
class LMBehaviour:
    """What the server does with the next requests.

    Parameters:
        mode: ``ok``, ``error`` (HTTP 500), ``bad_request`` (HTTP 400), ``rate_limit``
            (HTTP 429) or ``hang`` (no answer until the behaviour changes).
        retry_after: seconds sent in ``Retry-After`` with a 429 (default 1).
        delay_s: seconds to wait before answering (default 0).
        times: calls this behaviour applies to, after which the server answers ``ok``
            again (default: until changed).
    """

    mode: str = "ok"
    retry_after: float = 1.0
    delay_s: float = 0.0
    times: int | None = None


@dataclass
class FakeLMServer:
    """The server and what it saw. Use :func:`start_lm_server`."""

    behaviour: LMBehaviour = field(default_factory=LMBehaviour)
    calls: int = 0
    failures: int = 0
    questions: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    call_times: list[float] = field(default_factory=list)
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def api_base(self) -> str:
        """The base URL to give ``dspy.LM(api_base=...)``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def set(self, **behaviour: Any) -> None:
        """Change the behaviour (``mode``, ``retry_after``, ``delay_s``, ``times``)."""
        self.behaviour = LMBehaviour(**behaviour)

    def calls_for(self, question: str) -> int:
        """HTTP calls received for ``question`` (answered or not)."""
        return self.asked.count(question)

    def stop(self) -> None:
        """Stop the server and its thread (hanging calls are let go first)."""
        self.behaviour = LMBehaviour()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


def _answer_text(body: dict[str, Any]) -> tuple[str, str]:
    messages = body.get("messages", [])
    system = next((m["content"] for m in messages if m.get("role") == "system"), "")
    last_user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    if isinstance(system, list):
        system = "".join(part.get("text", "") for part in system)
    if isinstance(last_user, list):
        last_user = "".join(part.get("text", "") for part in last_user)
    section = OUTPUT_FIELDS.search(system)
    fields = FIELD_NAME.findall(section.group(1)) if section else ["answer"]
    match = QUESTION.search(last_user)
    question = match.group(1).strip() if match else ""
    # A compiled program sends worked examples (demos) as earlier user turns: say how
    # many, so a test can tell a program's answers from the plain module's.
    examples = sum(1 for m in messages if m.get("role") == "user") - 1
    suffix = f" (after {examples} examples)" if examples > 0 else ""
    values = {name: f"The test LM answers: {question}{suffix}" for name in fields}
    values["reasoning"] = "served over HTTP by the test LM"
    texts = TEXTS.search(last_user)
    if "analyses" in fields and texts:  # the analyzer's batch: one analysis per text
        count = len(json.loads(texts.group(1)))
        values["analyses"] = json.dumps([NEUTRAL_ANALYSIS] * count)
        question = f"{count} texts"
    text = "".join(f"[[ ## {name} ## ]]\n{values[name]}\n\n" for name in fields)
    return text + "[[ ## completed ## ]]", question


def _app(state: FakeLMServer) -> Starlette:
    async def chat(request: Request) -> Response:
        body = await request.json()
        state.calls += 1
        state.call_times.append(time.monotonic())
        state.asked.append(_answer_text(body)[1])
        behaviour = state.behaviour
        if behaviour.times is not None:
            behaviour.times -= 1
            if behaviour.times <= 0:
                state.behaviour = LMBehaviour()
        if behaviour.mode == "hang":
            while state.behaviour is behaviour:  # until the test changes it
                await asyncio.sleep(0.01)
            behaviour = state.behaviour
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.mode == "error":
            state.failures += 1
            return JSONResponse(
                {"error": {"message": "injected failure", "type": "server_error"}}, 500
            )
        if behaviour.mode == "bad_request":
            state.failures += 1
            return JSONResponse(
                {"error": {"message": "injected bad request", "type": "invalid_request_error"}},
                400,
            )
        if behaviour.mode == "rate_limit":
            state.failures += 1
            return JSONResponse(
                {"error": {"message": "slow down", "type": "rate_limit_error"}},
                429,
                headers={"retry-after": f"{behaviour.retry_after:g}"},
            )
        text, question = _answer_text(body)
        state.questions.append(question)
        model = body.get("model", "test-model")
        if body.get("stream"):
            return StreamingResponse(_stream(text, model), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": f"chatcmpl-{state.calls}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
            }
        )

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


async def _stream(text: str, model: str) -> Any:
    words = re.findall(r"\S+\s*|\s+", text)
    for index in range(0, len(words), 3):
        chunk = {
            "id": "chatcmpl-stream",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": {"content": "".join(words[index : index + 3])}}],
        }
        yield f"data: {json.dumps(chunk)}\n\n"
        await asyncio.sleep(0.005)
    end = {
        "id": "chatcmpl-stream",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    yield f"data: {json.dumps(end)}\n\n"
    yield "data: [DONE]\n\n"


def start_lm_server() -> FakeLMServer:
    """Start a server on a free port of 127.0.0.1, in a thread; returns once it listens."""
    state = FakeLMServer()
    config = uvicorn.Config(
        _app(state),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    state._server = server
    thread = threading.Thread(target=server.run, name="fake-lm", daemon=True)
    state._thread = thread
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the fake LM server did not start")
        time.sleep(0.01)
    state.port = server.servers[0].sockets[0].getsockname()[1]
    return state
