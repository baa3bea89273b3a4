"""``POST /v1/ask/stream``: ask a question and follow its answer as Server-Sent Events."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator

from starlette.requests import Request
from starlette.types import ASGIApp

from ragbus.gateway.errors import queue_full_refusal
from ragbus.gateway.models import AskRequest, DoneFrame, frame_data
from ragbus.gateway.progress import Frame, ProgressFrames, question_frames
from ragbus.gateway.requests import parse_body
from ragbus.gateway.sse import EventStreamResponse, encode_event
from ragbus.gateway.state import GatewayState, gateway_state


async def ask_stream(request: Request) -> ASGIApp:
    """Ask a question and stream its progress as ``text/event-stream``.

    The body is an :class:`~ragbus.gateway.models.AskRequest` (415 unless declared JSON,
    422 names each invalid field, 429 beyond the client's rate limit or the cap on open
    streams, or when the pipeline's queues are full: ``queue_full`` with ``Retry-After``,
    as the question is published before the stream starts). Events, in order: ``stage``
    (retrieve started, retrieve done), ``sources``, ``stage`` (generate started),
    ``token`` for each piece of the answer, ``stage`` (generate done), ``answer``; or
    ``error`` (timeout); always ``done`` last. A client that disconnects stops the wait
    at once, and its question is cancelled.
    """
    state = gateway_state(request)
    client_id = await state.check_rate(request)
    body = await parse_body(request, AskRequest)
    timeout = state.timeout(body.timeout)
    state.require_open()
    slot = state.admission.streams.take(client_id)
    progress = ProgressFrames()
    frames = question_frames(
        state.client,
        body.question,
        k=body.k,
        history=body.history,
        timeout=timeout,
        progress=progress,
    )
    started = time.perf_counter()
    try:
        first = await anext(frames)  # the question is published, or refused
        if first[0] == "error" and first[1].get("error") == "queue_full":
            raise queue_full_refusal(first[1].get("retry_after"))
    except BaseException:
        await frames.aclose()
        slot.release()
        raise
    events = _events(state, first, frames, progress, started)
    return EventStreamResponse(events, on_close=slot.release)


async def _events(
    state: GatewayState,
    first: Frame,
    frames: AsyncGenerator[Frame, None],
    progress: ProgressFrames,
    started: float,
) -> AsyncIterator[bytes]:
    metrics = state.metrics
    first_token = True
    metrics.streams.labels("sse").inc()

    async def all_frames() -> AsyncIterator[Frame]:
        yield first
        async for frame in frames:
            yield frame

    try:
        async for name, data in all_frames():
            if name == "token" and first_token:
                first_token = False
                metrics.first_token.observe(time.perf_counter() - started)
            elif name == "answer":
                metrics.answer.labels("/v1/ask/stream").observe(time.perf_counter() - started)
            yield encode_event(name, data)
        yield encode_event("done", frame_data(DoneFrame()))
        if progress.caught_up:
            metrics.caught_up.inc()
    finally:
        await frames.aclose()
        metrics.streams.labels("sse").dec()
