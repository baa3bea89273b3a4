"""The watchdog: re-establishes a stage whose consumer vanished.

After a reconnect the connection's restore hook gives every stage a new channel and
consumer (:meth:`~ragbus.bus.rabbitmq.consumer.Consumers.restore`), but that can fail
(right after a cluster node died, a quorum queue may have no leader for a moment), and
consumers vanish without any reconnect: a server-sent ``basic.cancel`` silently drops
one (aio-pika #334), a channel the broker closed takes its consumer with it. Every
``interval`` seconds the watchdog looks at each started, non-paused stage; one found
without a live consumer on two checks in a row (the first miss may be a restore under
way) gets a new channel, queue declaration and consumer, and a warning is logged. It
does nothing while the connection itself is down (the connection is reconnecting, and
restores the stages itself once it is back).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from ragbus.bus.rabbitmq.connection import BrokerConnection
from ragbus.bus.rabbitmq.consumer import Consumers

logger = logging.getLogger(__name__)

#: Checks a consumer may be missing before the watchdog rebuilds it (the first miss may
#: be aio-pika restoring it).
MISSES_BEFORE_REBUILD: Final = 2


class Watchdog:
    """Checks the consumers of ``consumers`` every ``interval`` seconds while running.

    Parameters:
        connection: the bus's connection (nothing is checked while it is down).
        consumers: the subscriptions to watch.
        interval: seconds between checks (default 2.0).
    """

    def __init__(
        self, connection: BrokerConnection, consumers: Consumers, interval: float = 2.0
    ) -> None:
        self.connection = connection
        self.consumers = consumers
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start checking in the background (again, if it had stopped)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="ragbus:watchdog")

    async def stop(self) -> None:
        """Stop checking."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("ragbus watchdog: check failed")

    async def check(self) -> None:
        """One round: refresh what each consumer is registered on, rebuild the stages
        missing theirs twice in a row."""
        consumers = self.consumers
        if not consumers.started:
            return
        subscriptions = list(consumers.subscriptions.values())
        if not self.connection.is_connected:
            # the connection is reconnecting; it restores every stage once it is back
            for subscription in subscriptions:
                subscription.misses = 0
            return
        for subscription in subscriptions:
            await consumers.refresh(subscription)
            if subscription.paused or subscription.alive:
                subscription.misses = 0
                continue
            subscription.misses += 1
            if subscription.misses < MISSES_BEFORE_REBUILD:
                continue
            logger.warning("stage %s has no live consumer; re-establishing it", subscription.name)
            async with subscription.lock:
                if subscription.paused or not consumers.started:
                    continue
                await consumers.refresh(subscription)
                if subscription.alive:
                    subscription.misses = 0
                    continue
                await consumers.close_channel(subscription)
                await consumers.open_locked(subscription)
