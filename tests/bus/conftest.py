"""Fixtures of the bus tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.amqp import Namespace


@pytest.fixture
async def namespace(amqp_url: str) -> AsyncIterator[Namespace]:
    """A fresh exchange and queue prefix on the test broker; what its buses declared is
    deleted after the test."""
    space = Namespace(amqp_url)
    try:
        yield space
    finally:
        await space.cleanup()
