"""Operating the dead-letter queues: select, replay, purge, export and import.

The same operations work on both buses, through the bus's dead-letter store
(:meth:`ragbus.bus.base.Bus.dead_letters`), which knows the pipeline's stages from its
caller: every command works the same from a fresh process. Replay republishes each dead
event to its own stage only (not to every subscriber of its type), with ``attempt``
reset to 1 and ``replays`` counted, and removes the dead letter only after the broker confirmed the
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

from ragbus.bus.base import Bus, DeadLetter, DeadLetterReason, DeadLetterStore
from ragbus.events import Envelope, EventRegistry, InvalidEvent, describe_validation_error, utc_now
from ragbus.json_input import MalformedJSON, parse_json
from ragbus.pipeline import Pipeline

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


def replay_event(letter: DeadLetter, events: EventRegistry) -> Envelope:
    """The event to republish for ``letter``: its envelope with ``attempt`` reset to 1 and
    ``replays`` + 1. An envelope sent without an id gets one derived from the dead
    letter's id, so replaying it twice yields the same event id (and dedup drops one).

    Raises ``ValueError`` when the dead letter holds no valid event of the pipeline (a
    message that was not JSON, or that breaks the event contract): replaying it would
    only fail again.

    Parameters:
        letter: the dead letter.
        events: the pipeline's event types, which the event must be valid for.
    """
    if letter.envelope is None:
        raise ValueError("not a JSON event: fix the producer and publish it again")
    original: dict[str, Any] = dict(letter.envelope)
    original.setdefault("id", str(uuid.uuid5(letter.id, "event")))
    replays = original.get("replays", 0)
    original["attempt"] = 1
    original["replays"] = (replays if isinstance(replays, int) else 0) + 1
    try:
        return events.validate(original)
    except InvalidEvent as exc:
        raise ValueError(str(exc)) from None


@dataclass
class ReplaySummary:
    """What a replay did."""

    replayed: int = 0
    skipped: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)


#: Dead letters replayed between two removals: a removal scans a whole RabbitMQ DLQ, so
#: removing one letter at a time would make a replay quadratic.
REMOVE_BATCH = 100


async def replay(
    bus: Bus,
    store: DeadLetterStore,
    letters: list[DeadLetter],
    events: EventRegistry,
    *,
    rate: float | None = None,
    dry_run: bool = False,
    progress: Callable[[DeadLetter], None] | None = None,
) -> ReplaySummary:
    """Republish ``letters`` to their stages, removing them from ``store`` after the
    broker's confirm (in batches of :data:`REMOVE_BATCH`).

    Parameters:
        bus: a connected bus.
        store: the dead-letter store the letters come from (``bus.dead_letters(...)``).
        letters: the dead letters to replay (see :meth:`DeadLetterStore.select`).
        events: the pipeline's event types (a letter whose event is not valid for them
            is skipped).
        rate: at most this many events per second (default: as fast as confirms come).
        dry_run: check each letter and count it, but publish and remove nothing
            (default False).
        progress: called after each letter (default: nothing).
    """
    summary = ReplaySummary()
    interval = 1.0 / rate if rate else 0.0
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    confirmed: list[DeadLetter] = []

    async def remove_confirmed() -> None:
        batch = confirmed[:]
        confirmed.clear()
        if not batch:
            return
        try:
            await store.remove([letter.id for letter in batch])
        except Exception as exc:
            summary.failed += len(batch)
            summary.problems += [
                f"{letter.id}: republished, but still in the DLQ ({type(exc).__name__}: "
                f"{exc}); replaying it again is harmless (duplicates are dropped by id)"
                for letter in batch
            ]
        else:
            summary.replayed += len(batch)

    for letter in letters:
        try:
            event = replay_event(letter, events)
        except ValueError as exc:
            summary.skipped += 1
            summary.problems.append(f"{letter.id}: skipped: {exc}")
        else:
            if dry_run:
                summary.replayed += 1
            else:
                if interval:
                    await asyncio.sleep(max(0.0, next_at - loop.time()))
                    next_at = max(next_at, loop.time()) + interval
                try:
                    await bus.publish(event, stage=letter.stage)
                except Exception as exc:
                    summary.failed += 1
                    summary.problems.append(f"{letter.id}: failed: {type(exc).__name__}: {exc}")
                else:
                    confirmed.append(letter)
                    if len(confirmed) >= REMOVE_BATCH:
                        await remove_confirmed()
        if progress is not None:
            progress(letter)
    await remove_confirmed()
    return summary


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


def check_import(letter: DeadLetter, pipeline: Pipeline) -> str | None:
    """Why ``letter`` may not be imported into ``pipeline``'s dead letters, or None.

    Its stage must be one of the pipeline's (a made-up stage would get a queue nobody
    serves); it must hold an envelope or a raw body; and unless it is ``invalid`` (an
    event that broke the contract, kept as it came), its envelope must be a valid event
    of the pipeline, one that a replay can republish.

    Parameters:
        letter: the dead letter read from an export.
        pipeline: the pipeline it is imported into.
    """
    stages = pipeline.stage_names
    if letter.stage not in stages:
        return f"unknown stage {letter.stage!r} (the pipeline's stages: {', '.join(stages)})"
    if letter.envelope is None and letter.raw is None:
        return "it holds neither an envelope nor a raw body"
    if letter.reason is not DeadLetterReason.INVALID:
        try:
            replay_event(letter, pipeline.events)
        except ValueError as exc:
            return f"its envelope is not a valid event ({exc})"
    return None


@dataclass
class ExportReading:
    """What :func:`read_export` found: the dead letters to import, and why each skipped
    line was skipped."""

    letters: list[DeadLetter] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_export(path: Path, pipeline: Pipeline) -> ExportReading:
    """Dead letters from a JSON-lines export, each checked with :func:`check_import`. A
    bad line is skipped and reported (naming its number), never aborts the rest.

    Parameters:
        path: the export file.
        pipeline: the pipeline the letters are imported into.
    """
    reading = ExportReading()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            letter = DeadLetter.model_validate(parse_json(line))
        except MalformedJSON as exc:
            reading.problems.append(f"{where}: skipped: not JSON ({exc})")
            continue
        except ValidationError as exc:
            problem = describe_validation_error(exc).replace("invalid event: ", "")
            reading.problems.append(f"{where}: skipped: not a dead letter ({problem})")
            continue
        refused = check_import(letter, pipeline)
        if refused is not None:
            reading.problems.append(f"{where}: skipped: {refused}")
            continue
        reading.letters.append(letter.model_copy(update={"notes": []}))
    return reading


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
