"""``GET /v1/ws``: a WebSocket chat with sessions.

The client sends ``{"question": ..., "session_id": ...}`` (a
:class:`~ragbus.gateway.models.ChatMessage`); the gateway answers with the frames of
:mod:`ragbus.gateway.progress` as JSON objects ``{"type": name, ...data}`` (``stage``,
``sources``, ``token``..., ``answer``, or ``error``) and ends each answer with a
``done`` frame naming the session. The session's last turns (``RAGBUS_GATEWAY_HISTORY_
TURNS``) go with each question as its history. Questions of one connection are
answered one after the other. A frame that is not a valid message gets an ``error``
frame; the connection stays open. When the client disconnects, the answer in progress
is abandoned and nothing is left running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from pydantic import ValidationError
from starlette.websockets import WebSocket

from ragbus.gateway.errors import describe
from ragbus.gateway.models import ChatMessage, DoneFrame, ErrorBody, frame_data
from ragbus.gateway.progress import ProgressFrames, question_frames
from ragbus.gateway.state import GatewayState, gateway_state
from ragbus.json_input import MalformedJSON, parse_json
from ragbus.payloads.rag import Turn

logger = logging.getLogger(__name__)

#: Messages a connection may have waiting while it is answered.
PENDING_MESSAGES = 16


async def chat(websocket: WebSocket) -> None:
    """Serve one WebSocket chat connection until the client closes it."""
    state = gateway_state(websocket)
    await websocket.accept()
    state.metrics.streams.labels("websocket").inc()
    conversation = _Conversation(websocket, state)
    reader = asyncio.create_task(conversation.read(), name="ragbus:ws-read")
    try:
        while True:
            turn = asyncio.create_task(conversation.next_turn(), name="ragbus:ws-turn")
            await asyncio.wait({turn, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not turn.done():  # the client left: abandon the answer
                turn.cancel()
                await asyncio.gather(turn, return_exceptions=True)
                return
            if turn.exception() is not None:  # the socket broke while sending
                logger.debug("chat connection ended: %r", turn.exception())
                return
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        state.metrics.streams.labels("websocket").dec()


class _Conversation:
    """One connection: its incoming messages and the answers to them."""

    def __init__(self, websocket: WebSocket, state: GatewayState) -> None:
        self.websocket = websocket
        self.state = state
        self.default_session = f"ws-{uuid.uuid4().hex}"
        self.inbox: asyncio.Queue[str | bytes] = asyncio.Queue(maxsize=PENDING_MESSAGES)

    async def read(self) -> None:
        """Queue incoming messages until the client disconnects (then return)."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            await self.inbox.put(data if data is not None else message.get("bytes") or b"")

    async def next_turn(self) -> None:
        """Answer the next message, or answer it with an ``error`` frame if it is invalid."""
        raw = await self.inbox.get()
        try:
            message = self._parse(raw)
        except ValueError as exc:
            await self._send(
                "error", frame_data(ErrorBody(error="invalid_message", message=str(exc)))
            )
            return
        await self._answer(message)

    def _parse(self, raw: str | bytes) -> ChatMessage:
        limit = self.state.settings.gateway_max_body_bytes
        if len(raw) > limit:
            raise ValueError(f"the message is larger than {limit} bytes")
        try:
            data = parse_json(raw)
        except MalformedJSON as exc:
            raise ValueError(f"malformed JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        try:
            return ChatMessage.model_validate(data)
        except ValidationError as exc:
            raise ValueError(describe(exc)) from None

    async def _answer(self, message: ChatMessage) -> None:
        state = self.state
        session = message.session_id or self.default_session
        progress = ProgressFrames()
        frames = question_frames(
            state.client,
            message.question,
            k=message.k,
            history=state.sessions.history(session),
            timeout=state.timeout(None),
            progress=progress,
        )
        try:
            async for name, data in frames:
                await self._send(name, data)
        finally:
            await frames.aclose()
        if progress.caught_up:
            state.metrics.caught_up.inc()
        if progress.answer is not None:
            answer = str(progress.answer.payload["answer"])
            state.sessions.record(session, Turn(question=message.question, answer=answer))
            state.metrics.sessions.set(len(state.sessions))
        await self._send("done", frame_data(DoneFrame(session_id=session)))

    async def _send(self, name: str, data: dict[str, Any]) -> None:
        await self.websocket.send_text(json.dumps({"type": name, **data}, ensure_ascii=False))
