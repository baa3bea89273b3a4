"""``ragbus status``: the app's pipeline at a glance, once or live (``--watch``).

On RabbitMQ the command listens to the workers' heartbeats for a moment, then asks the
broker for each stage queue's depth and consumers and reads the dead letters. The
memory bus lives inside the process that runs it, so there ``--url`` reads the status
that ``ragbus serve`` serves at ``/v1/status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from ragbus.cli_common import (
    AppOption,
    BusOption,
    ExitCode,
    configure_logging,
    fail,
    load_pipeline,
    run,
    settings_from,
)
from ragbus.config.kinds import BusKind

if TYPE_CHECKING:
    from ragbus.config.settings import Settings
    from ragbus.pipeline import Pipeline
    from ragbus.status.model import PipelineStatus

#: Said under the table on the memory bus without --url.
MEMORY_NOTE = (
    "the memory bus runs its stages inside one process: workers and queues show in "
    "`ragbus status --url http://HOST:PORT` of the `ragbus serve` that runs them"
)


def fetch_status(url: str, settings: Settings, timeout: float = 10.0) -> PipelineStatus:
    """The status a gateway serves at ``<url>/v1/status`` (with the bearer token of
    ``RAGBUS_API_TOKEN`` when set); a failure exits with one line."""
    from ragbus.status.model import PipelineStatus

    request = urllib.request.Request(url.rstrip("/") + "/v1/status")
    if settings.api_token is not None:
        request.add_header("Authorization", f"Bearer {settings.api_token.get_secret_value()}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        fail(f"{url} answered {exc.code}: {detail}", ExitCode.UNAVAILABLE)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        fail(f"cannot reach the gateway at {url}: {reason}", ExitCode.UNAVAILABLE)
    try:
        return PipelineStatus.model_validate_json(body)
    except ValueError as exc:
        fail(f"{url}/v1/status did not answer a status: {exc}", ExitCode.UNAVAILABLE)


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


async def _follow(
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


class StatusOutput:
    """Where ``ragbus status`` shows each status: printed once, a live view
    (``--watch``), or JSON lines (``--json``).

    Parameters:
        as_json: print JSON, one line per status.
        watch: keep one live view (ignored with ``as_json``).
        note: said under the table (default "").
    """

    def __init__(self, *, as_json: bool, watch: bool, note: str = "") -> None:
        from rich.live import Live

        from ragbus.cli_rich import table_console

        self.as_json = as_json
        self.note = note
        self.console = table_console()
        live = watch and not as_json
        self.live = Live(console=self.console, auto_refresh=False) if live else None

    def __enter__(self) -> StatusOutput:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.live is not None:
            self.live.stop()

    def show(self, current: PipelineStatus) -> None:
        """Show ``current``."""
        from ragbus.status.table import status_view

        if self.as_json:
            typer.echo(current.model_dump_json())
        elif self.live is not None:
            self.live.update(status_view(current, note=self.note), refresh=True)
        else:
            self.console.print(status_view(current, note=self.note))


def status(
    app: AppOption = None,
    bus: BusOption = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Read the status from a gateway (ragbus serve) at this URL instead, e.g. "
            "http://127.0.0.1:8000: the way to see a memory bus.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the status as JSON (one line per refresh).")
    ] = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep the view live until Ctrl-C.")
    ] = False,
    listen: Annotated[
        float | None,
        typer.Option(
            "--listen",
            min=0.1,
            help="Seconds to listen for heartbeats first (default: 1.25 heartbeat "
            "intervals, RAGBUS_HEARTBEAT_INTERVAL_S).",
            show_default=False,
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", min=0.2, help="Seconds between refreshes of --watch.")
    ] = 2.0,
) -> None:
    """Show the app's pipeline: per stage its state, queue depth, consumers, in flight,
    processed per second, failures by class, breaker, concurrency limit and dead
    letters by reason.

    A stage is "paused" while its dependency's breaker is open on every worker serving
    it, "no workers" when no worker's heartbeat arrived.
    """
    configure_logging(False)
    settings = settings_from(bus=bus, app=app, connect_timeout_s=0)
    note = MEMORY_NOTE if settings.bus is BusKind.MEMORY and url is None else ""
    with StatusOutput(as_json=as_json, watch=watch, note=note) as output:
        refresh = Refresh(watch=watch, interval=interval)
        if url is not None:
            run(_poll(url, settings, show=output.show, refresh=refresh))
            return
        pipeline = load_pipeline(settings)
        wait = listen if listen is not None else 1.25 * (settings.heartbeat_interval_s or 2.0)
        run(_follow(settings, pipeline, listen=wait, show=output.show, refresh=refresh))


async def _poll(
    url: str,
    settings: Settings,
    *,
    show: Callable[[PipelineStatus], None],
    refresh: Refresh,
) -> None:
    """Fetch and ``show`` the gateway's status, again at each ``refresh``."""
    with refresh:
        show(await asyncio.to_thread(fetch_status, url, settings))
        while await refresh.again():
            show(await asyncio.to_thread(fetch_status, url, settings))
