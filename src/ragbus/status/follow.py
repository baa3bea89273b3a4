"""What ``ragbus status`` does while it shows the pipeline: follow the bus's heartbeats
and queues, or poll a gateway's ``/v1/status``, refreshing until Ctrl-C with
``--watch``. Apart from the command, so that its help loads none of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from ragbus.config.kinds import BusKind

if TYPE_CHECKING:
    from ragbus.config.settings import Settings
    from ragbus.pipeline import Pipeline
    from ragbus.status.model import PipelineStatus


class Refresh:
    """When to show the status again: never (once), or every ``interval`` seconds until
    Ctrl-C (``--watch``), which ends the view quietly instead of as an interruption.

    Parameters:
        watch: keep refreshing.
        interval: seconds between refreshes.
    """

    def __init__(self, *, watch: bool, interval: float) -> None:
        self.watch = watch
        self.interval = interval
        self.stopped = asyncio.Event()

    def __enter__(self) -> Refresh:
        if self.watch:
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self.stopped.set)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.watch:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    async def again(self) -> bool:
        """Wait for the next refresh: True, or False when the view is over."""
        if not self.watch:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopped.wait(), self.interval)
        return not self.stopped.is_set()


async def follow(
    settings: Settings,
    pipeline: Pipeline,
    *,
    listen: float,
    show: Callable[[PipelineStatus], None],
    refresh: Refresh,
) -> None:
    """Connect, listen ``listen`` seconds, then collect and ``show`` the status, again
    at each ``refresh``."""
    from ragbus.bus.factory import make_bus
    from ragbus.status.board import HeartbeatBoard
    from ragbus.status.collect import collect_status

    async with make_bus(settings) as bus:
        board = HeartbeatBoard(pipeline.name)
        if settings.bus is not BusKind.MEMORY:
            board.subscribe(bus)
            await bus.start()
            await asyncio.sleep(listen)
        with refresh:
            show(await collect_status(bus, pipeline, board))
            while await refresh.again():
                show(await collect_status(bus, pipeline, board))
        await bus.stop(grace=0)


async def poll(
    fetch: Callable[[], PipelineStatus],
    *,
    show: Callable[[PipelineStatus], None],
    refresh: Refresh,
) -> None:
    """Fetch (in a thread: ``fetch`` blocks) and ``show`` a gateway's status, again at
    each ``refresh``."""
    with refresh:
        show(await asyncio.to_thread(fetch))
        while await refresh.again():
            show(await asyncio.to_thread(fetch))
