"""Test doubles with no I/O."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from ragbus.bus.base import (
    Bus,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterStore,
    MessageHandler,
    check_publish_options,
)
from ragbus.events import Envelope


class RecordingDeadLetters(DeadLetterStore):
    """A dead-letter store that keeps its letters in a list it shares with its bus."""

    def __init__(self, letters: list[DeadLetter], stages: Sequence[str]) -> None:
        super().__init__(stages)
        self.letters = letters

    @property
    def location(self) -> str:
        return "memory of the test"

    async def add(self, letter: DeadLetter) -> None:
        self.check_stage(letter.stage)
        self.letters.append(letter)

    async def select(self, where: DeadLetterFilter) -> list[DeadLetter]:
        stages = self.stages_matching(where)
        return [x for x in self.letters if x.stage in stages and where.matches(x)]

    async def remove(self, ids: Sequence[uuid.UUID]) -> int:
        before = len(self.letters)
        self.letters[:] = [x for x in self.letters if x.id not in ids]
        return before - len(self.letters)


class RecordingBus(Bus):
    """A bus that records what a consumer does with it and delivers nothing."""

    def __init__(self) -> None:
        self.published: list[tuple[Envelope, str | None]] = []
        self.delayed: list[tuple[Envelope, str, float]] = []
        self.transient: list[Envelope] = []
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

    async def publish(
        self,
        envelope: Envelope,
        *,
        stage: str | None = None,
        delay: float | None = None,
        transient: bool = False,
    ) -> None:
        check_publish_options(stage, delay, transient)
        if transient:
            self.transient.append(envelope)
        elif delay is not None:
            assert stage is not None
            self.delayed.append((envelope, stage, delay))
        else:
            self.published.append((envelope, stage))

    def dead_letters(self, stages: Sequence[str]) -> RecordingDeadLetters:
        return RecordingDeadLetters(self.letters, stages)
