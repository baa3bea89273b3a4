"""Dead letters in a local SQLite file: the memory bus's dead-letter queue.

One table, one row per dead letter, so ``ragbus dlq ...`` works on the embedded
default as it does on RabbitMQ.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ragbus.bus.base import DeadLetter, DeadLetterFilter

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


class SqliteDeadLetterStore:
    """Dead letters kept in a SQLite file.

    Parameters:
        path: the database file; its folder is created if missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one committed transaction, closed afterwards."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        try:
            connection.executescript(_SCHEMA)
            with connection:
                yield connection
        finally:
            connection.close()

    async def add(self, letter: DeadLetter) -> None:
        """Insert ``letter`` (or replace the one with its id); durable on return."""
        row = (
            str(letter.id),
            letter.stage,
            letter.reason.value,
            letter.error_type,
            letter.correlation_id,
            letter.last_failed_at.isoformat(),
            letter.model_dump_json(),
        )
        async with self._lock:
            await asyncio.to_thread(self._write, row)

    def _write(self, row: tuple[str | None, ...]) -> None:
        with self._connect() as connection:
            connection.execute("INSERT OR REPLACE INTO dead_letters VALUES (?,?,?,?,?,?,?)", row)

    async def select(self, where: DeadLetterFilter) -> list[DeadLetter]:
        """The dead letters matching ``where``, oldest first."""
        async with self._lock:
            records = await asyncio.to_thread(self._read_all)
        letters = [DeadLetter.model_validate_json(record) for record in records]
        selected = [letter for letter in letters if where.matches(letter)]
        return selected if where.limit is None else selected[: where.limit]

    def _read_all(self) -> list[str]:
        if not self.path.exists():
            return []
        with self._connect() as connection:
            cursor = connection.execute("SELECT record FROM dead_letters ORDER BY last_failed_at")
            return [row[0] for row in cursor]

    async def remove(self, ids: Sequence[uuid.UUID]) -> int:
        """Delete the dead letters with ``ids``; returns how many existed."""
        if not ids or not self.path.exists():
            return 0
        async with self._lock:
            return await asyncio.to_thread(self._delete, [str(i) for i in ids])

    def _delete(self, ids: list[str]) -> int:
        with self._connect() as connection:
            cursor = connection.executemany(
                "DELETE FROM dead_letters WHERE id = ?", [(i,) for i in ids]
            )
            return cursor.rowcount
