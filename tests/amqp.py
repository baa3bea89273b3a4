"""RabbitMQ test namespaces: buses sharing one exchange and queue prefix, deleted afterwards.

The broker is shared (other developers' test runs use it at the same time), so every
name this test session creates starts with ``test-<SESSION>-``: cleanup deletes only
what this session made, and the session ends by checking that none of it is left.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

import aio_pika
import httpx
from aiormq.exceptions import ChannelNotFoundEntity

from ragbus.bus.rabbitmq import RabbitMQBus, Topology
from ragbus.config import BusKind, Settings
from ragbus.pipelines.rag import pipeline as rag

#: Short delay tiers, so retry tests wait fractions of a second.
TIERS = (0.2, 0.5)

#: This test session's mark: the second part of every namespace prefix it creates.
SESSION = uuid.uuid4().hex[:6]


class Namespace:
    """Buses sharing one exchange and queue prefix, cleaned up after the test.

    Parameters:
        url: the broker's AMQP URL.
    """

    #: Every namespace this session created, for the leftover check at its end.
    created: list[Namespace] = []  # noqa: RUF012 - one registry per session, on purpose

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"test-{SESSION}-{uuid.uuid4().hex[:8]}"
        self.exchange = f"{self.prefix}.events"
        self.buses: list[RabbitMQBus] = []
        self.stages: set[str] = set()
        #: The topologies of processes in this namespace (see :meth:`track`).
        self.topologies: list[Topology] = []
        #: The test that made the namespace, named in the leftover report.
        self.test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
        Namespace.created.append(self)

    @property
    def topology(self) -> Topology:
        return Topology(exchange=self.exchange, prefix=self.prefix, delay_tiers=TIERS)

    def make(self, url: str | None = None, **options: Any) -> RabbitMQBus:
        """A new, unconnected bus in this namespace (``options`` go to the constructor).

        Parameters:
            url: the bus's AMQP URL, e.g. the nodes of a cluster in the order this bus
                tries them (default: the namespace's).
        """
        options.pop("dlq_path", None)
        bus = RabbitMQBus(
            url or self.url, exchange=self.exchange, queue_prefix=self.prefix, **options
        )
        self.buses.append(bus)
        return bus

    async def bus(self, **options: Any) -> RabbitMQBus:
        """A new, connected bus in this namespace, with the short delay :data:`TIERS`."""
        options.setdefault("delay_tiers", TIERS)
        bus = self.make(**options)
        await bus.connect()
        return bus

    def track(self, settings: Settings, stages: Iterable[str] = ()) -> None:
        """Remember the queues a process with ``settings`` declares for ``stages`` (its
        retry queues follow its own ``redelivery_delays_s``), so cleanup deletes them."""
        if settings.bus is not BusKind.RABBITMQ or settings.queue_prefix != self.prefix:
            return
        self.topologies.append(RabbitMQBus.from_settings(settings).topology)
        self.stages.update(stages)

    def queue_names(self) -> set[str]:
        """Every queue this namespace's buses and tracked processes may have declared."""
        topologies = [*(bus.topology for bus in self.buses), *self.topologies]
        stages = {
            *self.stages,
            *(stage for bus in self.buses for stage in bus.declarer.declared_stages),
        }
        names = {topology.sink_queue(sink) for topology in topologies for sink in rag.sinks}
        for topology in topologies:
            for stage in stages:
                names.update(topology.stage_queues(stage))
        return names

    async def cleanup(self) -> None:
        """Close every bus of the namespace and delete its queues and exchange."""
        for bus in self.buses:
            await bus.close()
        connection = await aio_pika.connect(self.url)
        try:
            for name in sorted(self.queue_names()):
                channel = await connection.channel()
                await channel.queue_delete(name)
                await channel.close()
            channel = await connection.channel()
            await channel.exchange_delete(self.exchange)
        finally:
            await connection.close()


# -- the session's leftovers ----------------------------------------------------------

#: The management API's port, where the plugin is enabled.
MANAGEMENT_PORT = 15672

#: Connections checking names at once when the management API is off.
_CONNECTIONS = 8


async def leftovers(url: str, namespaces: Iterable[Namespace]) -> dict[str, str]:
    """Queues and exchanges of ``namespaces`` still on the broker, each with the test
    that made it (exchanges are named ``exchange <name>``).

    Reads the broker's lists through its management API when that answers (it sees
    every name under the namespaces' prefixes); otherwise checks each name the
    namespaces know of with a passive declaration. Only this session's names are
    looked at: other test runs share the broker.
    """
    spaces = list(namespaces)
    listed = await _names_from_management_api(url)
    if listed is not None:
        queues, exchanges = listed
        listed_found = {
            name: space.test
            for name in queues
            for space in spaces
            if name.startswith(f"{space.prefix}.")
        }
        listed_found.update(
            (f"exchange {name}", space.test)
            for name in exchanges
            for space in spaces
            if name == space.exchange
        )
        return listed_found
    wanted = [(name, "queue", space.test) for space in spaces for name in space.queue_names()]
    wanted += [(space.exchange, "exchange", space.test) for space in spaces]
    found: dict[str, str] = {}

    async def check(batch: list[tuple[str, str, str]]) -> None:
        # one connection per batch, one channel at a time: a failed passive declaration
        # closes its channel, and aiormq must not reopen a number the broker still uses
        connection = await aio_pika.connect(url)
        try:
            for name, kind, test in batch:
                channel = await connection.channel()
                try:
                    if kind == "queue":
                        await channel.declare_queue(name, passive=True)
                    else:
                        await channel.declare_exchange(name, passive=True)
                except ChannelNotFoundEntity:
                    continue  # gone, as it should be
                await channel.close()
                found[name if kind == "queue" else f"exchange {name}"] = test
        finally:
            await connection.close()

    await asyncio.gather(*(check(wanted[n::_CONNECTIONS]) for n in range(_CONNECTIONS)))
    return found


async def delete_leftovers(url: str, names: Iterable[str]) -> None:
    """Delete this session's leftovers ``names`` (as :func:`leftovers` returns them),
    once they are reported."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for name in names:
            kind, _, exchange = name.partition("exchange ")
            if exchange and not kind:
                await channel.exchange_delete(exchange)
            else:
                await channel.queue_delete(name)
    finally:
        await connection.close()


async def _names_from_management_api(url: str) -> tuple[list[str], list[str]] | None:
    """Names of the queues and of the exchanges of ``url``'s virtual host, or None when
    no management API answers (the plugin is off: not ours to enable on a shared
    broker)."""
    parts = urlsplit(url)
    vhost = quote(parts.path[1:] or "/", safe="")
    base = f"http://{parts.hostname}:{MANAGEMENT_PORT}/api"
    auth = (parts.username or "guest", parts.password or "guest")
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=5, auth=auth) as client:
            queues = await client.get(f"{base}/queues/{vhost}", params={"columns": "name"})
            exchanges = await client.get(f"{base}/exchanges/{vhost}", params={"columns": "name"})
    except httpx.HTTPError:
        return None
    if queues.status_code != 200 or exchanges.status_code != 200:
        return None
    return (
        [str(item["name"]) for item in queues.json()],
        [str(item["name"]) for item in exchanges.json()],
    )
