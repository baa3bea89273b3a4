"""Test doubles with no I/O."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from ragbus.bus.base import Bus, DeadLetter, DeadLetterFilter, MessageHandler
from ragbus.events import Envelope


class RecordingBus(Bus):
    """A bus that records what a consumer does with it and delivers nothing."""

    def __init__(self) -> None:
        self.published: list[tuple[Envelope, str | None]] = []
        self.delayed: list[tuple[Envelope, str, float]] = []
        self.letters: list[DeadLetter] = []

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def subscribe(
        self,
        stage: str,
        event_types: Sequence[str],
        handler: MessageHandler,
        *,
        concurrency: int,
        ephemeral: bool = False,
    ) -> None:
        pass

    async def declare(self, stage: str, event_types: Sequence[str]) -> None:
        pass

    async def declare_sink(
        self,
        name: str,
        event_types: Sequence[str],
        *,
        max_length: int = 10_000,
        ttl_s: float = 3600,
    ) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self, grace: float = 30.0) -> None:
        pass

    async def publish(self, envelope: Envelope, *, stage: str | None = None) -> None:
        self.published.append((envelope, stage))

    async def publish_raw(self, body: bytes, event_type: str) -> None:
        raise NotImplementedError

    async def publish_later(self, envelope: Envelope, *, stage: str, delay: float) -> None:
        self.delayed.append((envelope, stage, delay))

    async def dead_letter(self, letter: DeadLetter) -> None:
        self.letters.append(letter)

    async def list_dead_letters(self, where: DeadLetterFilter) -> list[DeadLetter]:
        return [letter for letter in self.letters if where.matches(letter)]

    async def remove_dead_letters(self, ids: Sequence[uuid.UUID]) -> int:
        before = len(self.letters)
        self.letters = [letter for letter in self.letters if letter.id not in ids]
        return before - len(self.letters)
