"""The status of a pipeline as a ``rich`` table, for a terminal or ``--watch``."""

from __future__ import annotations

from collections.abc import Mapping

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ragbus.status.model import NO_WORKERS, PARTLY_PAUSED, PAUSED, PipelineStatus

_STATE_STYLE = {PAUSED: "bold red", PARTLY_PAUSED: "yellow", NO_WORKERS: "dim"}
_BREAKER_STYLE = {"open": "bold red", "half_open": "yellow", "closed": "green"}


def _counts(counts: Mapping[str, int]) -> str:
    """``transient 3, permanent 1`` (nonzero only), or ``-``."""
    shown = [f"{name} {count}" for name, count in counts.items() if count]
    return ", ".join(shown) or "-"


def _known(value: int | None) -> str:
    return "?" if value is None else str(value)


def status_table(status: PipelineStatus) -> Table:
    """One row per stage: state, queue depth, consumers, in flight, processed per
    second, failures by class, breaker, concurrency limit, dead letters by reason."""
    table = Table(
        title=f"{status.app} on the {status.bus} bus ({status.collected_at:%Y-%m-%d %H:%M:%S} UTC)",
        title_justify="left",
        # light lines: ten columns fit an ordinary terminal better
        box=box.SIMPLE_HEAD,
    )
    for header, justify in (
        ("stage", "left"),
        ("state", "left"),
        ("queue", "right"),
        ("consumers", "right"),
        ("in flight", "right"),
        ("processed/s", "right"),
        ("failures", "left"),
        ("breaker", "left"),
        ("limit", "right"),
        ("dead letters", "left"),
    ):
        # what a stage is doing must never be cut: the numbers give way first
        keep = header in ("stage", "state", "breaker")
        table.add_column(header, justify=justify, no_wrap=keep)  # type: ignore[arg-type]
    for row in status.stages:
        breaker = "-"
        if row.breaker is not None:
            breaker = f"{row.dependency} {row.breaker}" if row.dependency else row.breaker
        table.add_row(
            row.name,
            Text(row.state, style=_STATE_STYLE.get(row.state, "green")),
            _known(row.queue_depth),
            _known(row.consumers),
            str(row.in_flight),
            f"{row.processed_per_s:.1f}",
            _counts(row.failed),
            Text(breaker, style=_BREAKER_STYLE.get(row.breaker or "", "")),
            str(row.concurrency_limit) if row.workers else "-",
            _counts(row.dead_letters),
        )
    return table


def status_view(status: PipelineStatus, *, note: str = "") -> Group:
    """The table, the workers heard from and an optional ``note`` below it."""
    workers = ", ".join(
        f"{worker.worker_id} ({','.join(worker.stages)}, {worker.seconds_ago:.0f}s ago)"
        for worker in status.workers
    )
    parts: list[Table | Text] = [
        status_table(status),
        Text(f"workers: {workers or 'none heard from'}"),
    ]
    if note:
        parts.append(Text(note, style="dim"))
    return Group(*parts)
