"""The choices among settings that commands name as option types, without pydantic:
``ragbus --help`` lists them and needs nothing else of the settings."""

from __future__ import annotations

from enum import StrEnum


class RetrieverKind(StrEnum):
    """How the retrieve stage searches the corpus."""

    BM25 = "bm25"
    DENSE = "dense"
    HYBRID = "hybrid"


class BusKind(StrEnum):
    """Which message bus carries the events."""

    MEMORY = "memory"
    RABBITMQ = "rabbitmq"
