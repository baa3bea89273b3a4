"""How the ``ragbus`` commands draw: tables and progress bars with ``rich``.

Tables go to stdout, at the terminal's width or, off a terminal (a pipe, a log, a
test), at :data:`PIPE_WIDTH` columns so that no cell is cut. Progress bars go to stderr,
on a terminal only: logs and pipes stay clean.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import TaskID

#: Columns of a table printed off a terminal (rich assumes 80, too few for wide tables).
PIPE_WIDTH: Final = 160

#: ``show(phase, done, total)``: where a phase of the work stands.
PhaseProgress = Callable[[str, int, int], None]


def table_console() -> Console:
    """A console on stdout for tables."""
    return Console() if sys.stdout.isatty() else Console(width=PIPE_WIDTH)


@contextlib.contextmanager
def phased_progress(labels: dict[str, str] | None = None) -> Iterator[PhaseProgress | None]:
    """One bar per phase of a piece of work, on stderr, while the block runs; yields
    None off a terminal (the work then skips reporting).

    Parameters:
        labels: what each phase is called on screen (default: its name).
    """
    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    # here: the commands' help loads the console (typer draws with it), not the bars
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    names = labels or {}
    tasks: dict[str, TaskID] = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:

        def show(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(names.get(phase, phase), total=total)
            progress.update(tasks[phase], completed=done, total=total)

        yield show


@contextlib.contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """One bar on stderr (on a terminal only); yields ``advance_to(done)``.

    Parameters:
        label: what is being done.
        total: how many steps in all.
    """
    with phased_progress() as show:

        def advance_to(done: int) -> None:
            if show is not None:
                show(label, done, total)

        yield advance_to
