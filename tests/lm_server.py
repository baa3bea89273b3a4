"""A small OpenAI-compatible server for tests: chat answers in DSPy's adapter format,
and embeddings.

It can be given a capacity (:meth:`FakeLMServer.set_capacity`): above N chat calls
in flight it answers 429 with ``Retry-After`` at once, and its latency grows with its
load, like a server that batches its work. It can be told to fail with 500, to reject
with 400, to answer 429 with ``Retry-After``, to hang, or to answer slowly, for a
number of calls or until told otherwise (chat and embeddings each have their own
behaviour); it counts the calls it receives, and notes each call's time and question,
and each text it embedded.
It runs in a thread with its own event loop, so it keeps answering whatever the test's
loop is doing, and processes the test starts can reach it too.

Its embeddings (``POST /v1/embeddings``) are deterministic and mean something, like a
small real model's: a text's vector adds up, for each word, the vector of the word's
concept (words of one :data:`CONCEPTS` group share one: ``car`` and ``automobile``) or
else of the word itself, and a lighter one for each of the word's character trigrams
(so ``retry`` is near ``retries``); function words are left out, every other word
counts the same (no IDF), and the
features are hashed into :data:`EMBEDDING_DIMENSIONS` dimensions, so, like a real model,
it finds paraphrases that share no term with the text and misses the weight of a rare
term among common ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

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

#: Length of the stand-in's embeddings.
EMBEDDING_DIMENSIONS: Final = 256
#: Groups of words the stand-in embeds alike: what a real model learns from usage.
CONCEPTS: Final = (
    ("car", "cars", "automobile", "automobiles", "vehicle", "vehicles"),
    ("doctor", "doctors", "physician", "physicians", "medic"),
    ("buy", "buys", "purchase", "purchases", "purchasing", "acquire"),
    ("fast", "quick", "quickly", "rapid", "rapidly", "speedy", "swift"),
    ("begin", "begins", "start", "starts", "commence", "launch"),
    ("big", "large", "huge", "enormous", "massive"),
    ("error", "errors", "failure", "failures", "fault", "faults", "crash", "crashes"),
    ("help", "assist", "assistance", "support", "aid"),
    ("house", "houses", "home", "homes", "dwelling", "residence"),
    ("child", "children", "kid", "kids", "youngster"),
    ("money", "cash", "funds", "payment", "payments"),
    ("sea", "ocean", "oceans", "seas", "marine"),
    ("ill", "sick", "illness", "disease", "unwell"),
    ("stop", "stops", "halt", "cease", "pause"),
    ("picture", "pictures", "photo", "photos", "image", "images"),
    ("speak", "talk", "say", "converse", "chat"),
)
_CONCEPT_OF: Final = {word: group[0] for group in CONCEPTS for word in group}
_WORD_LIST = re.compile(r"\S+")
#: Words that carry no meaning of their own, left out (a real model weighs them little).
_FUNCTION_WORDS: Final = frozenset(
    _WORD_LIST.findall(
        "a an and are at be by can do does for from get how i if in is it its my of on or "
        "our should so than that the their there this to was we what when where which who "
        "will with you your"
    )
)
_WORD = re.compile(r"[a-z0-9]+")
_TRIGRAM_WEIGHT: Final = 0.3


def _feature(name: str) -> tuple[int, float]:
    """The dimension and sign a feature is hashed to."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    number = int.from_bytes(digest, "big")
    return number % EMBEDDING_DIMENSIONS, 1.0 if number >> 63 else -1.0


def embedding_of(text: str) -> list[float]:
    """The stand-in's unit vector of ``text`` (see the module docstring)."""
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in _WORD.findall(text.lower()):
        if word in _FUNCTION_WORDS:
            continue
        concept = _CONCEPT_OF.get(word)
        dimension, sign = _feature(f"c:{concept}" if concept else f"w:{word}")
        vector[dimension] += sign
        if concept is None:
            padded = f"<{word}>"
            for start in range(len(padded) - 2):
                dimension, sign = _feature(f"t:{padded[start : start + 3]}")
                vector[dimension] += sign * _TRIGRAM_WEIGHT
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [value / norm for value in vector]


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
class Capacity:
    """How much the server takes at once.

    Parameters:
        limit: chat calls in flight it serves; one more is answered 429 at once.
        base_s: latency of a call on an idle server; with ``n`` calls in flight (this
            one included) a call takes ``base_s * (1 + (n / limit) ** 2)``, so twice as
            long at capacity.
        retry_after: seconds sent in ``Retry-After`` with a 429 (default 1).
    """

    limit: int
    base_s: float
    retry_after: float = 1.0
    in_flight: int = 0
    rejected: int = 0
    served_times: list[float] = field(default_factory=list)
    rejected_times: list[float] = field(default_factory=list)

    def throughput(self) -> float:
        """The most calls per second it serves: ``limit`` in flight, each twice ``base_s``."""
        return self.limit / (2 * self.base_s)


@dataclass
class FakeLMServer:
    """The server and what it saw. Use :func:`start_lm_server`.

    ``calls`` counts chat calls; ``embedding_calls`` counts embedding calls and
    ``embedded`` holds every text an embedding call carried, in order. ``in_flight``
    is the number of chat calls the server is working on now (until their answer
    starts) and ``max_in_flight`` the most there ever were at once;
    ``authorization`` is the ``Authorization`` header of the last chat call.
    """

    behaviour: LMBehaviour = field(default_factory=LMBehaviour)
    embedding_behaviour: LMBehaviour = field(default_factory=LMBehaviour)
    embedding_calls: int = 0
    embedded: list[str] = field(default_factory=list)
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    authorization: str | None = None
    failures: int = 0
    questions: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    call_times: list[float] = field(default_factory=list)
    capacity: Capacity | None = None
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

    def set_embeddings(self, **behaviour: Any) -> None:
        """Change the behaviour of embedding calls (as :meth:`set` does for chat)."""
        self.embedding_behaviour = LMBehaviour(**behaviour)

    def set_capacity(self, limit: int, base_s: float, *, retry_after: float = 1.0) -> Capacity:
        """Serve at most ``limit`` chat calls at once (see :class:`Capacity`)."""
        self.capacity = Capacity(limit, base_s, retry_after)
        return self.capacity

    def calls_for(self, question: str) -> int:
        """HTTP calls received for ``question`` (answered or not)."""
        return self.asked.count(question)

    def stop(self) -> None:
        """Stop the server and its thread (hanging calls are let go first)."""
        self.behaviour = LMBehaviour()
        self.embedding_behaviour = LMBehaviour()
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


def _failure(behaviour: LMBehaviour) -> Response | None:
    """The failure ``behaviour`` answers with, or None to answer normally."""
    if behaviour.mode == "error":
        return JSONResponse({"error": {"message": "injected failure", "type": "server_error"}}, 500)
    if behaviour.mode == "bad_request":
        return JSONResponse(
            {"error": {"message": "injected bad request", "type": "invalid_request_error"}},
            400,
        )
    if behaviour.mode == "rate_limit":
        return _rate_limited(behaviour.retry_after)
    return None


def _rate_limited(retry_after: float) -> Response:
    """A 429 asking to come back in ``retry_after`` seconds."""
    return JSONResponse(
        {"error": {"message": "slow down", "type": "rate_limit_error"}},
        429,
        headers={"retry-after": f"{retry_after:g}"},
    )


async def _behave(state: FakeLMServer, which: str) -> Response | None:
    """Apply the chat (``behaviour``) or embedding (``embedding_behaviour``) behaviour to
    one call: count down its ``times``, hang or wait as told, and return the failure to
    answer with, if any."""
    behaviour: LMBehaviour = getattr(state, which)
    if behaviour.times is not None:
        behaviour.times -= 1
        if behaviour.times <= 0:
            setattr(state, which, LMBehaviour())
    if behaviour.mode == "hang":
        while getattr(state, which) is behaviour:  # until the test changes it
            await asyncio.sleep(0.01)
        behaviour = getattr(state, which)
    if behaviour.delay_s:
        await asyncio.sleep(behaviour.delay_s)
    failure = _failure(behaviour)
    if failure is not None:
        state.failures += 1
    return failure


def _app(state: FakeLMServer) -> Starlette:
    async def chat(request: Request) -> Response:
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            return await answer(request)
        finally:
            state.in_flight -= 1

    async def answer(request: Request) -> Response:
        state.authorization = request.headers.get("authorization")
        body = await request.json()
        state.calls += 1
        state.call_times.append(time.monotonic())
        state.asked.append(_answer_text(body)[1])
        capacity = state.capacity
        if capacity is not None:
            if capacity.in_flight >= capacity.limit:
                capacity.rejected += 1
                capacity.rejected_times.append(time.monotonic())
                return _rate_limited(capacity.retry_after)
            capacity.in_flight += 1
            try:
                load = capacity.in_flight / capacity.limit
                await asyncio.sleep(capacity.base_s * (1 + load * load))
            finally:
                capacity.in_flight -= 1
            capacity.served_times.append(time.monotonic())
        failure = await _behave(state, "behaviour")
        if failure is not None:
            return failure
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

    async def embeddings(request: Request) -> Response:
        body = await request.json()
        texts = body.get("input", [])
        texts = [texts] if isinstance(texts, str) else list(texts)
        state.embedding_calls += 1
        failure = await _behave(state, "embedding_behaviour")
        if failure is not None:
            return failure
        state.embedded.extend(texts)
        data = [
            {"object": "embedding", "index": index, "embedding": embedding_of(text)}
            for index, text in enumerate(texts)
        ]
        tokens = sum(len(text.split()) for text in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "test-embedding"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
    )


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
