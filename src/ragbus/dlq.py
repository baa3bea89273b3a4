"""Operating the dead-letter queues: select, replay, purge, export and import.

The same operations work on both buses. Replay republishes each dead event to its own
stage only (not to every subscriber of its type), with ``attempt`` reset to 1 and
``replays`` counted, and removes the dead letter only after the broker confirmed the
republish: a crash in between replays one event twice at worst, never loses one.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ragbus.bus.base import Bus, DeadLetter, DeadLetterFilter
from ragbus.events import Envelope, describe_validation_error, utc_now
from ragbus.json_input import MalformedJSON, parse_json

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """A point in time from ISO 8601 (``2026-11-21T10:00:00Z``; no zone means UTC) or an
    age (``30s``, ``10m``, ``2h``, ``7d`` ago). Raises ``ValueError`` with the reason."""
    match = _RELATIVE.match(text.strip())
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        return (now or utc_now()) - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use ISO 8601 like 2026-11-21T10:00:00Z, or 30s, 10m, 2h, 7d)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=utc_now().tzinfo)


def replay_event(letter: DeadLetter) -> Envelope:
    """The event to republish for ``letter``: its envelope with ``attempt`` reset to 1 and
    ``replays`` + 1. An envelope sent without an id gets one derived from the dead
    letter's id, so replaying it twice yields the same event id (and dedup drops one).

    Raises ``ValueError`` when the dead letter holds no valid event (a message that was
    not JSON, or that breaks the event contract): replaying it would only fail again.
    """
    if letter.envelope is None:
        raise ValueError("not a JSON event: fix the producer and publish it again")
    original: dict[str, Any] = dict(letter.envelope)
    original.setdefault("id", str(uuid.uuid5(letter.id, "event")))
    replays = original.get("replays", 0)
    original["attempt"] = 1
    original["replays"] = (replays if isinstance(replays, int) else 0) + 1
    try:
        return Envelope.model_validate(original)
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc)) from None


@dataclass
class ReplaySummary:
    """What a replay did."""

    replayed: int = 0
    skipped: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)


async def replay(
    bus: Bus,
    letters: list[DeadLetter],
    *,
    rate: float | None = None,
    dry_run: bool = False,
    progress: Callable[[DeadLetter], None] | None = None,
) -> ReplaySummary:
    """Republish ``letters`` to their stages, removing each after the broker's confirm.

    Parameters:
        bus: a connected bus.
        letters: the dead letters to replay (see :func:`select`).
        rate: at most this many events per second (default: as fast as confirms come).
        dry_run: check each letter and count it, but publish and remove nothing
            (default False).
        progress: called after each letter (default: nothing).
    """
    summary = ReplaySummary()
    interval = 1.0 / rate if rate else 0.0
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    for letter in letters:
        try:
            event = replay_event(letter)
        except ValueError as exc:
            summary.skipped += 1
            summary.problems.append(f"{letter.id}: skipped: {exc}")
        else:
            if not dry_run:
                if interval:
                    await asyncio.sleep(max(0.0, next_at - loop.time()))
                    next_at = max(next_at, loop.time()) + interval
                try:
                    await bus.publish(event, stage=letter.stage)
                    await bus.remove_dead_letters([letter.id])
                except Exception as exc:
                    summary.failed += 1
                    summary.problems.append(f"{letter.id}: failed: {type(exc).__name__}: {exc}")
                    if progress is not None:
                        progress(letter)
                    continue
            summary.replayed += 1
        if progress is not None:
            progress(letter)
    return summary


async def select(bus: Bus, where: DeadLetterFilter, stages: Iterable[str]) -> list[DeadLetter]:
    """The dead letters matching ``where``, oldest first, after declaring ``stages``'
    queues (a RabbitMQ bus lists the DLQs of the stages it knows). Changes nothing."""
    for stage in stages:
        await bus.declare(stage, [])
    return await bus.list_dead_letters(where)


def find(letters: list[DeadLetter], prefix: str) -> DeadLetter:
    """The one dead letter whose id starts with ``prefix``; ``LookupError`` otherwise."""
    matches = [letter for letter in letters if str(letter.id).startswith(prefix.lower())]
    if not matches:
        raise LookupError(f"no dead letter with id {prefix}")
    if len(matches) > 1:
        raise LookupError(f"{len(matches)} dead letters start with {prefix}: give more of the id")
    return matches[0]


def export_lines(letters: Iterable[DeadLetter]) -> Iterator[str]:
    """Each dead letter as one line of JSON."""
    for letter in letters:
        yield letter.model_dump_json()


def read_export(path: Path) -> list[DeadLetter]:
    """Dead letters from a JSON-lines export; the first bad line raises ``ValueError``
    naming its number."""
    letters = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            letters.append(DeadLetter.model_validate(parse_json(line)))
        except (MalformedJSON, ValidationError) as exc:
            raise ValueError(f"{path}, line {number}: not a dead letter ({exc})") from None
    return letters


def question_excerpt(letter: DeadLetter, width: int = 40) -> str:
    """The dead event's question (or the start of its raw body), cut to ``width``."""
    text = ""
    if letter.envelope is not None:
        payload = letter.envelope.get("payload")
        if isinstance(payload, dict):
            text = str(payload.get("question", ""))
    elif letter.raw:
        text = letter.raw
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def age(moment: datetime, *, now: datetime | None = None) -> str:
    """How long ago ``moment`` was, shortly: ``42s``, ``5m``, ``3h``, ``2d``."""
    seconds = max(0, int(((now or utc_now()) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
