"""The distributed path: the gateway on RabbitMQ in front of a ``ragbus worker`` process
that streams tokens (``RAGBUS_STREAM_TOKENS=true``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ragbus.client import Client
from ragbus.config import BusKind, Settings
from ragbus.gateway import create_app
from tests.amqp import Namespace
from tests.gateway.conftest import QUESTION, asgi_client, parse_sse


@pytest.mark.rabbitmq
async def test_tokens_stream_from_a_worker_process_through_the_gateway(
    amqp_url: str, settings: Settings, tmp_path: Path
) -> None:
    namespace = Namespace(amqp_url)
    namespace.stages.update({"retrieve", "generate"})
    environment = {
        **os.environ,
        "RAGBUS_BUS": "rabbitmq",
        "RAGBUS_AMQP_URL": amqp_url,
        "RAGBUS_EXCHANGE": namespace.exchange,
        "RAGBUS_QUEUE_PREFIX": namespace.prefix,
        "RAGBUS_STREAM_TOKENS": "true",
        "RAGBUS_CACHE_ENABLED": "false",
    }
    worker = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "ragbus.cli", "worker", "--port", "-1"),
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway_settings = settings.model_copy(update={"bus": BusKind.RABBITMQ})
    client = Client(gateway_settings, bus=namespace.make(), follow_tokens=True)
    assert not client.run_pipeline  # the worker does the work
    try:
        await client.open()
        async with asgi_client(create_app(gateway_settings, client)) as http:
            # Until the worker consumes both stages: before, a question is unroutable
            # (503) or lost between the stages' start-ups (504).
            ready = {"question": QUESTION, "timeout": 3}
            async with asyncio.timeout(60):
                while (await http.post("/v1/ask", json=ready)).status_code != 200:
                    assert worker.returncode is None, "the worker exited"
                    await asyncio.sleep(0.2)
            response = await http.post("/v1/ask/stream", json={"question": QUESTION})
        events = parse_sse(response.text)
        tokens = [data["text"] for name, data in events if name == "token"]
        [answer] = [data["answer"] for name, data in events if name == "answer"]
        assert len(tokens) > 1 and "".join(tokens) == answer
        assert events[-1][0] == "done"
    finally:
        await client.close()
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 30) == 0
        await namespace.cleanup()
