"""``ragbus ask --file``: answer a file of questions, one JSON line per question, in order.

Results go to standard output as they are ready (in input order), a progress bar and a
summary to standard error, so ``ragbus ask --file q.txt > answers.jsonl`` keeps the
answers clean. A question that fails gets a line with its ``error``; the batch goes on
and the command exits 1 (``ExitCode.FAILED``) when any question failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ragbus.cli_common import ExitCode, fail, run

if TYPE_CHECKING:
    from ragbus.config import Settings
    from ragbus.pipeline import Pipeline


def ask_file(
    path: Path,
    *,
    settings: Settings,
    pipeline: Pipeline,
    concurrency: int,
    k: int | None,
    timeout: float,
) -> None:
    """Answer every question of ``path`` and print each result as a JSON line.

    Parameters:
        path: a ``.txt`` (one question a line) or ``.jsonl`` file (see
            :func:`ragbus.batch.read_questions`).
        settings: the settings (bus, corpus, LM).
        pipeline: the pipeline that answers.
        concurrency: questions asked at once.
        k: passages to retrieve when a question does not say.
        timeout: seconds each question may take.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ragbus.batch import answer_in_order, read_questions
    from ragbus.client import Client

    inputs = read_questions(path) if path.exists() else None
    if inputs is None:
        fail(f"no such file: {path}", ExitCode.CONFIGURATION)
    if not inputs:
        fail(f"{path} holds no questions", ExitCode.USAGE)
    console = Console(stderr=True)
    failed = 0

    async def go() -> None:
        nonlocal failed
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        async with Client(settings, app=pipeline, follow_progress=False) as client:
            with Progress(*columns, console=console, transient=True) as progress:
                bar = progress.add_task("answering", total=len(inputs))
                results = answer_in_order(
                    client, inputs, concurrency=concurrency, k=k, timeout=timeout
                )
                async for result in results:
                    sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
                    sys.stdout.flush()
                    failed += not result.ok
                    progress.advance(bar)

    run(go())
    console.print(f"{len(inputs) - failed} answered, {failed} failed")
    if failed:
        raise typer.Exit(ExitCode.FAILED)
