"""Token chunks: what an LM writes within ``RAGBUS_STREAM_CHUNK_MS`` travels as one
``answer_token`` event; the chunks reassemble to the whole answer, in order, nothing lost,
on both buses and through the gateway's frames."""

from __future__ import annotations

import asyncio

import pytest

from ragbus.bus.base import InboundMessage, emitter
from ragbus.events import Envelope
from ragbus.gateway.progress import ProgressFrames
from ragbus.handlers import GenerateHandler
from ragbus.lm import offline_lm
from ragbus.payloads.rag import AnswerToken, RagEvent
from ragbus.streaming import ChunkedEmit, TokenEmitter
from tests.conftest import BusFactory
from tests.gateway.test_tokens import _retrieved


class Recorder:
    """An emit that keeps every event, and the loop time of each."""

    def __init__(self) -> None:
        self.events: list[Envelope] = []
        self.times: list[float] = []

    async def __call__(self, event: Envelope) -> None:
        self.events.append(event)
        self.times.append(asyncio.get_running_loop().time())

    @property
    def texts(self) -> list[str]:
        return [AnswerToken.model_validate(event.payload).text for event in self.events]

    @property
    def sequences(self) -> list[int]:
        return [AnswerToken.model_validate(event.payload).sequence for event in self.events]


async def test_deltas_within_the_chunk_time_travel_as_one_event() -> None:
    sent = Recorder()
    tokens = TokenEmitter(_retrieved(), sent, RagEvent.ANSWER_TOKEN, chunk_s=0.05)
    async with tokens:
        await tokens.add(" The")
        assert sent.texts == ["The"]  # the first piece goes out at once
        for word in (" first", " chunk", " "):
            await tokens.add(word)
        assert sent.texts == ["The"]  # gathered while the chunk time runs
        await asyncio.sleep(0.08)
        assert sent.texts == ["The", " first chunk"]  # sent when it ran out
        await tokens.add("and the")
        await tokens.add(" rest  ")
    # leaving the block sends what is gathered (the space held back after "chunk" with
    # it); trailing space is not in the value
    assert sent.texts == ["The", " first chunk", " and the rest"]
    assert sent.sequences == [0, 1, 2]
    assert sent.times[2] - sent.times[1] < 0.05  # closing did not wait for the timer


async def test_an_error_drops_what_is_gathered_and_stops_the_timer() -> None:
    sent = Recorder()
    tokens = TokenEmitter(_retrieved(), sent, RagEvent.ANSWER_TOKEN, chunk_s=0.02)
    with pytest.raises(RuntimeError):
        async with tokens:
            await tokens.add("one")
            await tokens.add(" two")
            raise RuntimeError("the LM failed")
    await asyncio.sleep(0.05)
    assert sent.texts == ["one"]


async def test_the_chunk_time_comes_with_the_host_s_emit() -> None:
    chunked = TokenEmitter(_retrieved(), ChunkedEmit(Recorder(), 0.01), RagEvent.ANSWER_TOKEN)
    plain = TokenEmitter(_retrieved(), Recorder(), RagEvent.ANSWER_TOKEN)
    assert (chunked.chunk_s, plain.chunk_s) == (0.01, 0.0)
    with pytest.raises(ValueError, match="must not be negative"):
        ChunkedEmit(Recorder(), -1)


async def _stream_through(make_bus: BusFactory, chunk_s: float) -> tuple[list[Envelope], str]:
    """Generate one answer with the offline LM (300 ms spread over its deltas), its tokens
    published on a bus with ``chunk_s``; the token events a listener got, and the answer."""
    bus = make_bus()
    await bus.connect()
    got: asyncio.Queue[Envelope] = asyncio.Queue()

    async def listen(message: InboundMessage) -> None:
        await got.put(Envelope.model_validate_json(message.body))

    bus.subscribe("listener", [RagEvent.ANSWER_TOKEN], listen, concurrency=1, ephemeral=True)
    await bus.start()
    try:
        emit = ChunkedEmit(emitter(bus), chunk_s)
        event = _retrieved()
        [answer] = await GenerateHandler(offline_lm(latency_ms=300), emit=emit)(event)
        text = str(answer.payload["answer"])
        received: list[Envelope] = []
        async with asyncio.timeout(10):
            while "".join(AnswerToken.model_validate(e.payload).text for e in received) != text:
                received.append(await got.get())
        frames = ProgressFrames()
        for token in received:
            frames.feed(token)
        frames.feed(answer)
        # the gateway's frames needed no catching up: every token arrived, in order
        assert not frames.caught_up and not frames.tokens_lost and frames.text == text
        return received, text
    finally:
        await bus.close()


@pytest.mark.slow
async def test_chunked_tokens_reassemble_to_the_whole_answer_on_each_bus(
    make_bus: BusFactory,
) -> None:
    deltas, text = await _stream_through(make_bus, 0.0)
    chunks, same = await _stream_through(make_bus, 0.1)
    assert same == text
    sequences = [AnswerToken.model_validate(e.payload).sequence for e in chunks]
    assert sequences == list(range(len(chunks)))
    # several deltas per message: fewer, longer token events
    assert 1 < len(chunks) < len(deltas)
