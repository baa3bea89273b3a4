"""``ragbus status``: the app's pipeline at a glance, once or live (``--watch``).

On RabbitMQ the command listens to the workers' heartbeats for a moment, then asks the
broker for each stage queue's depth and consumers and reads the dead letters. The
memory bus lives inside the process that runs it, so there ``--url`` reads the status
that ``ragbus serve`` serves at ``/v1/status``.
"""

from __future__ import annotations

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
    from ragbus.status.model import PipelineStatus

#: Said under the table on the memory bus without --url.
MEMORY_NOTE = (
    "the memory bus runs its stages inside one process: workers and queues show in "
    "`ragbus status --url http://HOST:PORT` of the `ragbus serve` that runs them"
)


def fetch_status(url: str, settings: Settings, timeout: float = 10.0) -> PipelineStatus:
    """The status a gateway serves at ``<url>/v1/status`` (with the bearer token of
    ``RAGBUS_API_TOKEN`` when set); a failure exits with one line."""
    import urllib.error
    import urllib.request

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
    from ragbus.status.follow import Refresh, follow, poll

    configure_logging(False)
    settings = settings_from(bus=bus, app=app, connect_timeout_s=0)
    note = MEMORY_NOTE if settings.bus is BusKind.MEMORY and url is None else ""
    with StatusOutput(as_json=as_json, watch=watch, note=note) as output:
        refresh = Refresh(watch=watch, interval=interval)
        if url is not None:
            gateway = url
            run(poll(lambda: fetch_status(gateway, settings), show=output.show, refresh=refresh))
            return
        pipeline = load_pipeline(settings)
        wait = listen if listen is not None else 1.25 * (settings.heartbeat_interval_s or 2.0)
        run(follow(settings, pipeline, listen=wait, show=output.show, refresh=refresh))
