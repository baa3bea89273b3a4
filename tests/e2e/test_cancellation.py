"""Cancellation, on every bus: questions whose clients gave up stop costing LM calls.

A hundred clients ask and leave 100 ms later, while the generate stage (four at a time,
each LM call half a second) has barely begun: without cancellation the stand-in LM
would go on answering them for more than ten seconds; with it, the calls in flight are
cancelled, the queued events are dropped as they come up (counted, not dead-lettered),
and at most a handful of calls reach the LM after the clients left.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from ragbus.bus.base import DeadLetterFilter, InboundMessage
from ragbus.client import Client
from ragbus.control import CANCEL, CONTROL_EVENTS, CancelRequested
from ragbus.payloads.rag import RagEvent
from ragbus.pipelines.rag import GENERATE, RETRIEVE
from ragbus.pipelines.rag import pipeline as rag
from ragbus.runtime.runner import Runtime
from tests.amqp import Namespace
from tests.conftest import BusFactory
from tests.faults.support import fault_settings
from tests.lm_server import FakeLMServer
from tests.polling import wait_until

CLIENTS = 100
LM_CALL_S = 0.5


def _in_flight(runtime: Runtime, stage: str) -> float:
    return float(runtime.metrics.in_flight.labels(stage)._value.get())


def _count(runtime: Runtime, counter: str, stage: str) -> float:
    metric = runtime.cancellations.counter if counter == "cancelled" else runtime.metrics.processed
    return float(metric.labels(stage)._value.get())


@pytest.mark.slow
async def test_clients_that_leave_stop_costing_lm_calls(
    make_bus: BusFactory, lm: FakeLMServer, tmp_path: Path
) -> None:
    lm.set(delay_s=LM_CALL_S)
    settings = fault_settings(tmp_path, lm, concurrency=4, cache_enabled=False)
    bus = make_bus()
    async with Client(settings, bus=bus, run_pipeline=True) as client:
        runtime = client.runtime
        assert runtime is not None
        await client.ask("What is a dead letter?", timeout=30)  # warm: index loaded
        before = lm.calls

        async def ask_and_leave(number: int) -> None:
            question = f"How does ragbus handle a failed event? (client {number})"
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.ask(question, timeout=30), 0.1)

        await asyncio.gather(*(ask_and_leave(number) for number in range(CLIENTS)))
        left = time.monotonic()

        async def idle() -> bool:
            # nothing queued or in flight at either stage, and every question that went
            # past retrieve ended at generate (a question whose client left before it was
            # even published never reached the bus: nothing to settle)
            depths = [await bus.queue_stats(stage) for stage in (RETRIEVE, GENERATE)]
            return (
                all(depth is not None and depth.messages == 0 for depth in depths)
                and _in_flight(runtime, RETRIEVE) == _in_flight(runtime, GENERATE) == 0
                and _count(runtime, "processed", RETRIEVE)
                == _count(runtime, "processed", GENERATE) + _count(runtime, "cancelled", GENERATE)
            )

        async def settled() -> bool:
            # idle twice, a moment apart: a delivery between its queue and its handler is
            # neither queued nor in flight
            if not await idle():
                return False
            await asyncio.sleep(0.3)
            return await idle()

        await wait_until(settled, what="every question settled", timeout=30)
        settled_after = time.monotonic() - left
        letters = await bus.dead_letters([RETRIEVE, GENERATE]).select(DeadLetterFilter())

    during = sum(1 for at in lm.call_times[before:] if at <= left)
    after = sum(1 for at in lm.call_times[before:] if at > left)
    cancelled = _count(runtime, "cancelled", RETRIEVE) + _count(runtime, "cancelled", GENERATE)
    print(  # the figures docs/BENCHMARKS.md records
        f"\n{type(bus).__name__}: {during} LM calls while the clients waited, {after} after "
        "they left; "
        f"{cancelled:.0f} events cancelled; settled {settled_after:.2f}s after they left"
    )
    assert during >= 1  # the LM was at work when they left: calls in flight were cancelled
    assert _count(runtime, "cancelled", GENERATE) >= 1
    assert after <= 5
    answered = _count(runtime, "processed", GENERATE) - 1  # the warm-up question is not one
    assert answered <= 10  # all but a handful were dropped: cancelled, or never sent
    assert settled_after < 10  # no question kept the stages busy (a loaded machine is slow)
    assert letters == []  # a cancelled question is not a failure


@pytest.mark.slow
@pytest.mark.rabbitmq
async def test_ctrl_c_in_ragbus_ask_cancels_the_question(amqp_url: str, tmp_path: Path) -> None:
    namespace = Namespace(amqp_url)
    try:
        bus = await namespace.bus()
        await bus.declare(RETRIEVE, [RagEvent.QUERY_RECEIVED])  # no worker: it waits there
        cancels: list[CancelRequested] = []

        async def on_cancel(message: InboundMessage) -> None:
            cancels.append(CONTROL_EVENTS.decode(message.body).payload_as(CancelRequested))

        bus.subscribe("watch", [CANCEL], on_cancel, concurrency=4, ephemeral=True)
        await bus.start()
        environment = {
            **os.environ,
            "RAGBUS_BUS": "rabbitmq",
            "RAGBUS_AMQP_URL": amqp_url,
            "RAGBUS_EXCHANGE": namespace.exchange,
            "RAGBUS_QUEUE_PREFIX": namespace.prefix,
            "XDG_DATA_HOME": str(tmp_path),
        }
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "ragbus.cli", "ask", "What is a dead letter?"),
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        queue = namespace.topology.stage_queue(RETRIEVE)

        async def waiting() -> bool:
            async with bus.connection.channel() as channel:
                declared = await channel.declare_queue(queue, passive=True)
                return bool(declared.declaration_result.message_count)

        await wait_until(waiting, what="the question in the retrieve queue", timeout=30)
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 130, stderr.decode()
        assert "interrupted" in stderr.decode()
        await wait_until(lambda: cancels, what="a ragbus.cancel event")
        async with bus.connection.channel() as channel:
            message = await (await channel.declare_queue(queue, passive=True)).get()
            query = rag.events.decode(message.body)
            await message.ack()
        assert [cancel.correlation_id for cancel in cancels] == [query.correlation]
    finally:
        await namespace.cleanup()
