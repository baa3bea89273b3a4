"""Dead letters in a local SQLite file: the memory bus's dead-letter store.

One table, one row per dead letter, so ``ragbus dlq ...`` works on the embedded
default as it does on RabbitMQ. The file holds what users asked, so it is created
readable by its owner only (``0600``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from ragbus.bus.base import DeadLetter, DeadLetterFilter, DeadLetterReason, DeadLetterStore
from ragbus.events import utc_now
from ragbus.files import ensure_private

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    reason TEXT NOT NULL,
    error_type TEXT NOT NULL,
    correlation_id TEXT,
    last_failed_at TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_time ON dead_letters (last_failed_at);
"""

#: A row as read: id, stage, reason, error type, last failure time, the record (JSON).
_Row = tuple[str, str, str, str, str, str]


class SqliteDeadLetterStore(DeadLetterStore):
    """The dead letters of ``stages``, kept in a SQLite file.

    Parameters:
        path: the database file; it and its folder are created when the first dead
            letter is added (the file with mode ``0600``).
        stages: the pipeline's stage names (see :class:`DeadLetterStore`).
    """

    def __init__(self, path: Path, stages: Sequence[str]) -> None:
        super().__init__(stages)
        self.path = path
        self._lock = asyncio.Lock()

    @property
    def location(self) -> str:
        """The SQLite file's path."""
        return f"SQLite file {self.path.resolve()}"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one committed transaction, closed afterwards."""
        ensure_private(self.path)
        connection = sqlite3.connect(self.path, timeout=30)
        try:
            connection.executescript(_SCHEMA)
            with connection:
                yield connection
        finally:
            connection.close()

    async def add(self, letter: DeadLetter) -> None:
        """Insert ``letter`` (or replace the one with its id); durable on return."""
        self.check_stage(letter.stage)
        row = (
            str(letter.id),
            letter.stage,
            letter.reason.value,
            letter.error_type,
            letter.correlation_id,
            letter.last_failed_at.isoformat(),
            letter.model_dump_json(exclude={"notes"}),
        )
        async with self._lock:
            await asyncio.to_thread(self._write, row)

    def _write(self, row: tuple[str | None, ...]) -> None:
        with self._connect() as connection:
            connection.execute("INSERT OR REPLACE INTO dead_letters VALUES (?,?,?,?,?,?,?)", row)

    async def select(self, where: DeadLetterFilter) -> list[DeadLetter]:
        """The dead letters of the store's stages matching ``where``, oldest first."""
        stages = self.stages_matching(where)
        async with self._lock:
            rows = await asyncio.to_thread(self._read, stages)
        letters = [_letter(row) for row in rows]
        selected = [letter for letter in letters if where.matches(letter)]
        return selected if where.limit is None else selected[: where.limit]

    def _read(self, stages: tuple[str, ...]) -> list[_Row]:
        if not self.path.exists():
            return []
        marks = ",".join("?" * len(stages))
        with self._connect() as connection:
            cursor = connection.execute(
                "SELECT id, stage, reason, error_type, last_failed_at, record FROM dead_letters"
                f" WHERE stage IN ({marks}) ORDER BY last_failed_at",
                stages,
            )
            return [tuple(str(value) for value in row) for row in cursor]  # type: ignore[misc]

    async def remove(self, ids: Sequence[uuid.UUID]) -> int:
        """Delete the dead letters of the store's stages with ``ids``; returns how many
        existed."""
        if not ids or not self.path.exists():
            return 0
        async with self._lock:
            return await asyncio.to_thread(self._delete, list(ids))

    def _delete(self, ids: list[uuid.UUID]) -> int:
        wanted = set(ids)
        marks = ",".join("?" * len(self.stages))
        with self._connect() as connection:
            # Rows are matched by the id they are listed under (see _row_id), so a row
            # whose id column was damaged can still be removed.
            cursor = connection.execute(
                f"SELECT id FROM dead_letters WHERE stage IN ({marks})", self.stages
            )
            doomed = [(text,) for (text,) in cursor if _row_id(str(text)) in wanted]
            connection.executemany("DELETE FROM dead_letters WHERE id = ?", doomed)
            return len(doomed)


def _letter(row: _Row) -> DeadLetter:
    """The dead letter of a row; a damaged record becomes a letter built from the row's
    columns, with a note saying so (one bad row never aborts a listing)."""
    letter_id, stage, reason, error_type, last_failed_at, record = row
    try:
        return DeadLetter.model_validate_json(record)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"] if exc.errors() else str(exc)
    notes = [f"the stored record could not be read ({problem}); listed from its columns"]
    try:
        when = datetime.fromisoformat(last_failed_at)
    except ValueError:
        when = utc_now()
        notes.append("its failure time could not be read; shown as the time of listing")
    identifier = _row_id(letter_id)
    if str(identifier) != letter_id:
        notes.append(f"its id {letter_id!r} is not a UUID; listed as {identifier}")
    known = {reason.value for reason in DeadLetterReason}
    return DeadLetter(
        id=identifier,
        stage=stage,
        reason=DeadLetterReason(reason) if reason in known else DeadLetterReason.FAILED,
        error_type=error_type,
        first_failed_at=when,
        last_failed_at=when,
        raw=record,
        notes=notes,
    )


def _row_id(text: str) -> uuid.UUID:
    """The id a row is listed under: its id column, or, when that is not a UUID, one
    derived from it (the same at every listing, so the row can be removed by it)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"ragbus-dead-letter:{text}")
