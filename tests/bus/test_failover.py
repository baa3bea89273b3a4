"""Failover between the nodes of ``RAGBUS_AMQP_URL``, on the shared broker.

Two TCP proxies in front of the one broker play two nodes of a cluster: cutting a proxy
is losing that node. The real cluster (nodes stopped for real, queue leaders moving) is
tests/cluster/.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import pytest

from ragbus.bus.base import InboundMessage
from ragbus.bus.errors import BrokerUnavailableError, PublishNotConfirmedError
from ragbus.bus.rabbitmq import RabbitMQBus
from ragbus.bus.rabbitmq import publisher as publisher_module
from ragbus.config.urls import mask_url
from ragbus.payloads.rag import RagEvent
from tests.amqp import Namespace
from tests.bus.test_rabbitmq_bus import event_id, query
from tests.polling import wait_until
from tests.tcp_proxy import TcpProxy, free_port, unreachable_url

pytestmark = pytest.mark.rabbitmq


def node_list(amqp_url: str, *proxies: TcpProxy) -> str:
    return ",".join(proxy.url_for(amqp_url) for proxy in proxies)


async def retrieving_bus(
    namespace: Namespace, nodes: str, **options: Any
) -> tuple[RabbitMQBus, list[str]]:
    """A connected bus on ``nodes`` with the stage ``retrieve`` subscribed (not started),
    and the ids of the events it handles."""
    bus = namespace.make(nodes, **options)
    await bus.connect()
    seen: list[str] = []

    async def handle(message: InboundMessage) -> None:
        seen.append(event_id(message))

    bus.subscribe("retrieve", [RagEvent.QUERY_RECEIVED], handle, concurrency=4)
    return bus, seen


async def test_connecting_skips_a_node_that_is_down(
    namespace: Namespace, amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ragbus.bus.rabbitmq")
    down = unreachable_url(amqp_url)
    bus = namespace.make(f"{down},{amqp_url}", connect_timeout=0)
    await bus.connect()
    assert bus.connection.node == mask_url(amqp_url)
    port = urlsplit(down).port
    assert f"(attempt 2; 127.0.0.1:{port}: connection refused)" in caplog.text
    await bus.declare("retrieve", [RagEvent.QUERY_RECEIVED])
    await bus.publish(query(1))


async def test_when_no_node_answers_the_error_names_each_one_masked() -> None:
    nodes = [f"amqp://app:s3cret-pw@127.0.0.1:{free_port()}/" for _ in range(2)]
    bus = RabbitMQBus(",".join(nodes), connect_timeout=0)
    with pytest.raises(BrokerUnavailableError) as raised:
        await bus.connect()
    text = str(raised.value)
    assert "s3cret-pw" not in text
    assert text.startswith(f"cannot reach the RabbitMQ broker at {mask_url(','.join(nodes))} (")
    for node in nodes:  # one round: each node tried once, each named with its reason
        assert f"127.0.0.1:{urlsplit(node).port}: connection refused" in text
    assert "2 attempts" in text


async def test_losing_a_node_moves_the_bus_to_the_next_and_consuming_resumes(
    namespace: Namespace,
    amqp_url: str,
    node_proxies: list[TcpProxy],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ragbus.bus.rabbitmq")
    first, second = node_proxies
    bus, durable = await retrieving_bus(
        namespace, node_list(amqp_url, first, second), reconnect_interval=0.1
    )
    following: list[str] = []

    async def follow(message: InboundMessage) -> None:
        following.append(event_id(message))

    bus.subscribe("client", [RagEvent.QUERY_RECEIVED], follow, concurrency=4, ephemeral=True)
    await bus.start()
    reconnects: list[object] = []
    bus.connection.on_reconnect(reconnects.append)
    await bus.publish(query(0))
    await wait_until(lambda: len(durable) == len(following) == 1, what="the first event")

    first.cut()  # the node the bus is on goes away, and stays away
    await wait_until(lambda: reconnects, what="the bus to reconnect", timeout=15)
    assert bus.connection.node == mask_url(second.url_for(amqp_url))
    await wait_until(lambda: bus.healthy, what="every consumer back", timeout=10)
    events = [query(n) for n in range(1, 11)]
    for event in events:
        await bus.publish(event)
    expected = sorted(str(event.id) for event in events)
    await wait_until(
        lambda: sorted(durable[1:]) == expected and sorted(following[1:]) == expected,
        what="the events after the failover, on both subscriptions",
        timeout=15,
    )
    assert f"lost the connection to the RabbitMQ broker at 127.0.0.1:{first.port}" not in (
        caplog.text  # messages name the masked URL, not just the address
    )
    assert f"lost the connection to the RabbitMQ broker at {mask_url(first.url_for(amqp_url))}" in (
        caplog.text
    )
    assert f"reconnected to the RabbitMQ broker at {mask_url(second.url_for(amqp_url))}" in (
        caplog.text
    )
    assert ":guest@" not in caplog.text  # the password is masked everywhere


async def test_a_publish_during_the_outage_waits_for_a_node_to_come_back(
    namespace: Namespace, amqp_url: str, node_proxies: list[TcpProxy]
) -> None:
    first, second = node_proxies
    bus = namespace.make(node_list(amqp_url, first, second), reconnect_interval=0.1)
    await bus.connect()
    await bus.declare("retrieve", [RagEvent.QUERY_RECEIVED])
    first.cut()
    second.cut()
    await wait_until(lambda: not bus.connection.is_connected, what="the bus to see the loss")
    event = query(1)
    publishing = asyncio.create_task(bus.publish(event))
    await asyncio.sleep(0.5)  # the outage lasts a while: the publish is still waiting
    assert not publishing.done()
    second.restore()
    await asyncio.wait_for(publishing, timeout=15)  # confirmed once a node is back
    assert bus.connection.node == mask_url(second.url_for(amqp_url))


async def test_the_watchdog_restores_a_stage_the_failover_could_not(
    namespace: Namespace,
    amqp_url: str,
    node_proxies: list[TcpProxy],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ragbus.bus.rabbitmq")
    first, second = node_proxies
    bus, seen = await retrieving_bus(
        namespace, node_list(amqp_url, first, second), reconnect_interval=0.1, watchdog_interval=0.1
    )
    await bus.start()
    # The first declaration after the failover fails, as it can while a quorum queue
    # elects a new leader on the nodes that are left.
    declare = bus.declarer.stage
    failures: list[str] = []

    async def flaky(stage: str, event_types: list[str]) -> None:
        if not failures:
            failures.append(stage)
            raise RuntimeError("no leader yet")
        await declare(stage, event_types)

    monkeypatch.setattr(bus.declarer, "stage", flaky)
    first.cut()
    await wait_until(lambda: failures, what="the restore to fail once", timeout=15)
    await wait_until(lambda: bus.healthy, what="the watchdog to restore the stage", timeout=10)
    assert "consuming again after the reconnect failed" in caplog.text
    assert "re-establishing it" in caplog.text  # the watchdog did it
    await bus.publish(query(1))
    await wait_until(lambda: len(seen) == 1, what="the event after the failover")


async def test_a_publish_gives_up_when_no_node_comes_back_in_time(
    namespace: Namespace,
    amqp_url: str,
    node_proxies: list[TcpProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publisher_module, "RECONNECT_WAIT_S", 0.5)
    bus = namespace.make(node_list(amqp_url, *node_proxies), reconnect_interval=0.1)
    await bus.connect()
    await bus.declare("retrieve", [RagEvent.QUERY_RECEIVED])
    for proxy in node_proxies:
        proxy.cut()
    await wait_until(lambda: not bus.connection.is_connected, what="the bus to see the loss")
    with pytest.raises(PublishNotConfirmedError, match="lost and not back yet") as raised:
        await bus.publish(query(1))
    assert "guest:guest" not in str(raised.value)  # the nodes are named masked
