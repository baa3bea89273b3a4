"""``RAGBUS_AMQP_URL`` as a list of nodes, as processes use it: a worker and a ``Client``
move to another node when they lose their own, and one-shot commands use the first node
that answers.

The nodes are TCP proxies to the shared broker (cutting one is losing that node); the
cluster itself, with nodes stopped for real, is tests/cluster/.
"""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from ragbus.cli_common import ExitCode
from ragbus.client import Client
from ragbus.config.urls import mask_url
from tests.amqp import Namespace
from tests.polling import wait_until
from tests.process.workers import Workers
from tests.tcp_proxy import TcpProxy, unreachable_url

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

QUESTION = "How does ragbus handle a failed event?"


async def test_a_worker_and_a_client_move_to_the_next_node_when_their_node_goes(
    workers: Workers, namespace: Namespace, amqp_url: str, node_proxies: list[TcpProxy]
) -> None:
    first, second = node_proxies
    nodes = f"{first.url_for(amqp_url)},{second.url_for(amqp_url)}"
    worker = await workers.start("all", amqp_url=nodes)
    asked = await workers.run("ask", "--bus", "rabbitmq", "--json", QUESTION, timeout=90)
    assert asked.code == 0, asked.stderr + workers.report()
    client = Client(workers.settings.model_copy(update={"amqp_url": SecretStr(nodes)}))
    await client.open()
    try:
        assert (await client.ask(QUESTION, timeout=60)).text
        first.cut()  # the node of the worker and the client is gone for good
        moved = f"reconnected to the RabbitMQ broker at {mask_url(second.url_for(amqp_url))}"
        await wait_until(lambda: moved in worker.log, what="the worker to move", timeout=30)
        await wait_until(lambda: client.bus.healthy, what="the client to move", timeout=30)
        # its listener's queue is on the new node: it gets its answers again
        assert (await client.ask("Which LM answers by default?", timeout=60)).text
    finally:
        await client.close()

    async def healthy() -> bool:
        status, _ = await worker.healthz()
        return status == 200

    await wait_until(healthy, what="the worker's /healthz", timeout=30, report=worker.describe)
    again = await workers.run("ask", "--bus", "rabbitmq", "--json", "Which LM answers?", timeout=90)
    assert again.code == 0, again.stderr + workers.report()
    assert json.loads(again.stdout)["payload"]["answer"]
    assert await healthy()
    assert ":guest@" not in worker.log  # every URL it names is masked


async def test_one_shot_commands_use_the_first_node_that_answers(
    workers: Workers, namespace: Namespace, amqp_url: str
) -> None:
    down = unreachable_url(amqp_url)
    listed = await workers.run("dlq", "list", "--bus", "rabbitmq", amqp_url=f"{down},{amqp_url}")
    assert listed.code == 0, listed.stderr
    assert mask_url(f"{down},{amqp_url}") in listed.stderr  # where the dead letters are

    other = unreachable_url(amqp_url)
    failed = await workers.run("dlq", "list", "--bus", "rabbitmq", amqp_url=f"{down},{other}")
    assert failed.code == ExitCode.UNAVAILABLE
    [line] = failed.stderr.strip().splitlines()  # one line, naming each node masked
    assert line.startswith(f"error: cannot reach the RabbitMQ broker at {mask_url(down)},")
    for url in (down, other):
        port = url.rsplit(":", 1)[1].rstrip("/")
        assert f"127.0.0.1:{port}: connection refused" in line
    assert "guest:guest" not in failed.stderr
