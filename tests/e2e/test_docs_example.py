"""The worked example of docs/pipelines.md, imported as written and run on both buses
(across worker processes: tests/process/test_apps_across_processes.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragbus.client import Client
from ragbus.config import Settings
from ragbus.pipeline import Pipeline
from tests.conftest import BusFactory

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.fixture(scope="module")
def example() -> Iterator[Pipeline]:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import docs_example  # type: ignore[import-not-found]

        yield docs_example.pipeline
    finally:
        sys.path.remove(str(EXAMPLES))


async def test_the_worked_example_runs_on_each_bus(
    example: Pipeline, make_bus: BusFactory, settings: Settings
) -> None:
    async with Client(
        settings, app=example, bus=make_bus(), run_pipeline=True, follow_tokens=True
    ) as client:
        review = {"text": "The battery lasts two days.  The speaker is weak.", "product": " X2 "}
        events = [event async for event in client.stream_events(review, timeout=30)]
    read = events[-1]
    assert read.type == "review_read"
    assert read.payload["product"] == "x2"
    assert read.payload["summary"] == "The battery lasts two days."
    assert read.payload["topics"] and len(read.payload["topics"]) <= 8
    tokens = sorted(
        (e for e in events if e.type == "summary_token"), key=lambda e: e.payload["sequence"]
    )
    assert "".join(t.payload["text"] for t in tokens) == read.payload["summary"]
    assert [e.type for e in events if e.type != "summary_token"] == [
        "review_received",
        "review_cleaned",
        "review_read",
    ]
