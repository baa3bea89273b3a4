"""``ragbus analyze``: stream texts through an app, print each result as soon as it is ready.

Input is one text per line: plain text, or a JSON object that is the app's entry payload
(for the analyzer ``{"text": ..., "source": ...}``). A line that is not valid input is
reported and skipped; the stream goes on. Results come out as JSON lines in the order
they are ready, each with the number of its input line; a batch stage flushes its last,
partial batch after its wait when the input ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import IO, Any

from ragbus.client import Client
from ragbus.events import InvalidEvent
from ragbus.json_input import MalformedJSON, parse_json


@dataclass
class StreamSummary:
    """What a stream did: results printed, lines refused as invalid, requests failed."""

    done: int = 0
    invalid: int = 0
    failed: int = 0


async def read_lines(stream: IO[str]) -> AsyncIterator[str]:
    """The lines of ``stream`` as they come (read in a thread: the event loop keeps
    serving results while it waits for input)."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, stream.readline)
        if not line:
            return
        yield line


def parse_line(line: str) -> dict[str, Any] | None:
    """The payload a line holds: a JSON object as it is, plain text as ``{"text": ...}``;
    None for a blank line; :class:`~ragbus.events.InvalidEvent` for a bad one."""
    text = line.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            value = parse_json(text)
        except MalformedJSON as exc:
            raise InvalidEvent(f"malformed JSON: {exc}") from None
        if not isinstance(value, dict):
            raise InvalidEvent(f"expected a JSON object, got {type(value).__name__}")
        return value
    return {"text": text}


async def stream_through(
    client: Client,
    lines: AsyncIterator[str],
    *,
    event_type: str,
    in_flight: int,
    timeout: float,
    emit: Callable[[dict[str, Any]], None],
    report: Callable[[str], None],
) -> StreamSummary:
    """Send each line's payload as an event of ``event_type`` and hand each result to
    ``emit`` as soon as it arrives; at most ``in_flight`` requests wait at once.

    Parameters:
        client: an open client of the app.
        lines: the input lines.
        event_type: the entry event type to send.
        in_flight: requests waiting at most at once (at least a batch's worth, so
            batches fill).
        timeout: seconds one request may take.
        emit: gets each result, as ``{"line": n, "id": ..., **payload}``.
        report: gets a one-line message for each refused line or failed request.
    """
    summary = StreamSummary()
    room = asyncio.Semaphore(in_flight)
    pending: set[asyncio.Task[None]] = set()

    async def one(number: int, payload: dict[str, Any]) -> None:
        try:
            result = await client.request(payload, event_type=event_type, timeout=timeout)
        except InvalidEvent as exc:
            summary.invalid += 1
            report(f"line {number}: {exc}")
        except Exception as exc:
            summary.failed += 1
            report(f"line {number}: {type(exc).__name__}: {exc}")
        else:
            summary.done += 1
            emit({"line": number, "id": str(result.event.id), **result.event.payload})
        finally:
            room.release()

    number = 0
    async for line in lines:
        number += 1
        try:
            payload = parse_line(line)
        except InvalidEvent as exc:
            summary.invalid += 1
            report(f"line {number}: {exc}")
            continue
        if payload is None:
            continue
        await room.acquire()
        task = asyncio.create_task(one(number, payload))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    return summary
