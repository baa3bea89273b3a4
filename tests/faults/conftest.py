"""Fixtures of the fault-injection tests: the fake LM server, one per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lm_server import FakeLMServer, start_lm_server


@pytest.fixture
def lm() -> Iterator[FakeLMServer]:
    """An OpenAI-compatible LM server over HTTP, answering ``ok`` until told otherwise."""
    server = start_lm_server()
    try:
        yield server
    finally:
        server.stop()
