"""How long a refused publisher may wait, and how it tries again (no I/O)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from ragbus.bus.backpressure import Refused, until_accepted, wait_budget
from ragbus.errors import QueueFullError
from ragbus.events import Envelope, new_event, utc_now
from ragbus.payloads.rag import QueryReceived, RagEvent


def _query(deadline_in: float | None) -> Envelope:
    event = new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question="q"))
    if deadline_in is None:
        return event
    return event.model_copy(update={"deadline": utc_now() + timedelta(seconds=deadline_in)})


def test_the_budget_is_the_wait_unless_the_deadline_comes_first() -> None:
    assert wait_budget(None, 5.0) == 5.0
    assert wait_budget(_query(None), 5.0) == 5.0
    assert wait_budget(_query(60), 5.0) == 5.0
    assert 0.5 < wait_budget(_query(1), 5.0) <= 1.0
    assert wait_budget(_query(-1), 5.0) == 0.0


async def test_a_refused_send_is_tried_again_until_it_is_taken() -> None:
    tries = 0

    async def send() -> None:
        nonlocal tries
        tries += 1
        if tries < 4:
            raise Refused("q")

    await until_accepted(send, budget=5.0, where="queue 'q'")
    assert tries == 4


async def test_a_send_refused_for_the_whole_budget_fails_with_queue_full() -> None:
    tries = 0

    async def send() -> None:
        nonlocal tries
        tries += 1
        raise Refused("q")

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(QueueFullError, match="queue 'q' is full") as refused:
        await until_accepted(send, budget=0.2, where="queue 'q'")
    assert 0.2 <= loop.time() - started < 1.0
    assert tries > 2  # it backed off and tried again, more than once
    assert refused.value.retry_after == 1.0


async def test_no_budget_means_one_try() -> None:
    tries = 0

    async def send() -> None:
        nonlocal tries
        tries += 1
        raise Refused("q")

    with pytest.raises(QueueFullError):
        await until_accepted(send, budget=0, where="queue 'q'")
    assert tries == 1
