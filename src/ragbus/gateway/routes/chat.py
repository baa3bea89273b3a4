"""``GET /v1/ws``: a WebSocket chat with sessions.

The client sends ``{"question": ..., "session_id"?: ...}`` (a
:class:`~ragbus.gateway.models.ChatMessage`); the gateway answers with the frames of
:mod:`ragbus.gateway.progress` as JSON objects ``{"type": name, ...data}`` (``stage``,
``sources``, ``token``..., ``answer``, or ``error``) and ends each answer with a
``done`` frame naming the session. Sessions are issued by the gateway: each connection
has its own, and may continue only a session of its owner (see
:mod:`ragbus.gateway.sessions`). The session's last turns (``RAGBUS_GATEWAY_HISTORY_
TURNS``) go with each question as its history. Questions of one connection are
answered one after the other. A frame that is not a valid message, names another
client's session or comes beyond the client's rate limit gets an ``error`` frame; the
connection stays open. When the client disconnects, the answer in progress is
abandoned and nothing is left running.

A handshake beyond the client's rate limit, or beyond the caps on open WebSockets, is
refused with HTTP 429 (``Retry-After``, a JSON body); on a server without the ASGI
WebSocket denial response it is closed with 1013 (try again later) instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from pydantic import ValidationError
from starlette.websockets import WebSocket

from ragbus.gateway.errors import RequestError, describe
from ragbus.gateway.models import ChatMessage, DoneFrame, ErrorBody, frame_data
from ragbus.gateway.progress import ProgressFrames, question_frames
from ragbus.gateway.sessions import new_session_id
from ragbus.gateway.state import GatewayState, gateway_state
from ragbus.json_input import MalformedJSON, json_type_name, parse_json
from ragbus.payloads.rag import Turn

logger = logging.getLogger(__name__)

#: Messages a connection may have waiting while it is answered.
PENDING_MESSAGES = 16

#: Close code of a refused handshake where the server cannot send an HTTP refusal.
TRY_AGAIN_LATER = 1013


async def chat(websocket: WebSocket) -> None:
    """Serve one WebSocket chat connection until the client closes it."""
    state = gateway_state(websocket)
    try:
        client = await state.check_rate(websocket)
        slot = state.admission.websockets.take(client)
    except RequestError as refusal:
        await _refuse(websocket, refusal)
        return
    with slot:
        await _serve(websocket, state, client)


async def _serve(websocket: WebSocket, state: GatewayState, client: str) -> None:
    await websocket.accept()
    state.metrics.streams.labels("websocket").inc()
    conversation = _Conversation(websocket, state, client)
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
        conversation.close()
        state.metrics.streams.labels("websocket").dec()


async def _refuse(websocket: WebSocket, refusal: RequestError) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(refusal.response())
    else:
        await websocket.close(code=TRY_AGAIN_LATER, reason=refusal.error)


class _InvalidMessage(Exception):
    """A frame the gateway answers with an ``error`` frame: its code and reason."""

    def __init__(self, error: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.body = ErrorBody(error=error, message=message, retry_after=retry_after)


class _Conversation:
    """One connection: its session, its incoming messages and the answers to them.

    Parameters:
        websocket: the accepted connection.
        state: the gateway's state.
        client: the client's key (rate limits; with a token, the sessions' owner).
    """

    def __init__(self, websocket: WebSocket, state: GatewayState, client: str) -> None:
        self.websocket = websocket
        self.state = state
        self.client = client
        self.token_bound = state.settings.api_token is not None
        # With a token, the token owns the sessions; without, this connection alone.
        self.owner = client if self.token_bound else f"connection:{uuid.uuid4().hex}"
        self.own_session = new_session_id()
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
        """Answer the next message, or answer it with an ``error`` frame if it is invalid,
        names another client's session, or is over the client's rate limit."""
        raw = await self.inbox.get()
        try:
            message = self._parse(raw)
            await self._check_rate()
            session = self._session(message.session_id)
        except _InvalidMessage as invalid:
            await self._send("error", frame_data(invalid.body))
            return
        await self._answer(message, session)

    def close(self) -> None:
        """Forget a session nobody else may continue (no token: it was this connection's)."""
        if not self.token_bound:
            self.state.sessions.discard(self.own_session)

    def _parse(self, raw: str | bytes) -> ChatMessage:
        limit = self.state.settings.gateway_max_body_bytes
        size = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
        if size > limit:
            raise _InvalidMessage("invalid_message", f"the message is larger than {limit} bytes")
        try:
            data = parse_json(raw)
        except MalformedJSON as exc:
            raise _InvalidMessage("invalid_message", f"malformed JSON: {exc}") from None
        if not isinstance(data, dict):
            raise _InvalidMessage(
                "invalid_message", f"expected a JSON object, got {json_type_name(data)}"
            )
        try:
            return ChatMessage.model_validate(data)
        except ValidationError as exc:
            raise _InvalidMessage("invalid_message", describe(exc)) from None

    async def _check_rate(self) -> None:
        try:
            await self.state.admission.check_rate(self.client)
        except RequestError as refusal:
            wait = float(refusal.headers.get("Retry-After", "1"))
            raise _InvalidMessage(refusal.error, refusal.message, retry_after=wait) from None

    def _session(self, named: str | None) -> str:
        """The session a message continues: the connection's own, or one its owner was
        issued before."""
        if named is None or named == self.own_session:
            return self.own_session
        if self.state.sessions.owns(named, self.owner):
            return named
        raise _InvalidMessage(
            "unknown_session",
            "no such session of yours: continue a session the gateway issued to you (the "
            "`session_id` of a `done` frame), or leave `session_id` out",
        )

    async def _answer(self, message: ChatMessage, session: str) -> None:
        state = self.state
        progress = ProgressFrames()
        frames = question_frames(
            state.client,
            message.question,
            k=message.k,
            history=state.sessions.history(session, self.owner),  # _session checked the owner
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
            turn = Turn(question=message.question, answer=answer)
            state.sessions.record(session, self.owner, turn)
            state.metrics.sessions.set(len(state.sessions))
        await self._send("done", frame_data(DoneFrame(session_id=session)))

    async def _send(self, name: str, data: dict[str, Any]) -> None:
        await self.websocket.send_text(json.dumps({"type": name, **data}, ensure_ascii=False))
