"""``ragbus optimize`` (compile the RAG program on examples) and ``ragbus trainset``
(make examples from exported answers and dead letters)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ragbus.cli_common import CorpusOption, ExitCode, configure_logging, fail, settings_from
from ragbus.errors import ConfigurationError

if TYPE_CHECKING:
    from ragbus.config import Settings
    from ragbus.optimize.compiler import OptimizerKind
    from ragbus.optimize.metrics import MetricKind


def optimize(
    trainset: Annotated[
        Path,
        typer.Option(
            "--trainset",
            "-t",
            help='JSON lines: {"question": ..., "answer": ..., "context": [...] (optional: '
            "else the configured retriever finds the passages)}.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the compiled program (JSON).")
    ],
    optimizer: Annotated[
        str,
        typer.Option(
            "--optimizer",
            help="bootstrap (BootstrapFewShot: worked examples) or mipro (MIPROv2, light: "
            "instructions and examples; needs optuna: the optimize extra of ragbus).",
        ),
    ] = "bootstrap",
    metric: Annotated[
        str,
        typer.Option(
            "--metric",
            help="exact (normalized exact match), f1 (word overlap) or judge (the "
            "configured LM says whether the answer agrees with the example's).",
        ),
    ] = "f1",
    holdout: Annotated[
        float,
        typer.Option(
            "--holdout", min=0.05, max=0.9, help="Share of the examples held out for scoring."
        ),
    ] = 0.3,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the train/held-out split.")] = 0,
    corpus: CorpusOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    """Compile the RAG generate program on your examples with a DSPy optimizer and the
    configured LM (RAGBUS_LM_MODEL), and write it; serve it with RAGBUS_PROGRAM.

    The examples are split into a training part and a held-out part (--holdout); the
    command prints the score of the program as written and of the compiled one on the
    held-out part, with the metric you pick, both answered through the generate stage
    as workers serve it. Make examples from exported answers and dead letters with
    `ragbus trainset`.
    """
    from ragbus.optimize.compiler import OptimizerKind
    from ragbus.optimize.metrics import MetricKind

    configure_logging(verbose)
    if not verbose:
        logging.getLogger("dspy").setLevel(logging.ERROR)
    kinds = {kind.value: kind for kind in OptimizerKind}
    metrics = {kind.value: kind for kind in MetricKind}
    if optimizer not in kinds:
        fail(f"unknown optimizer {optimizer!r}: use {' or '.join(kinds)}", ExitCode.USAGE)
    if metric not in metrics:
        fail(f"unknown metric {metric!r}: use {', '.join(metrics)}", ExitCode.USAGE)
    settings = settings_from(corpus=corpus)
    import asyncio  # here: the other commands' help needs it not

    try:
        asyncio.run(
            _optimize(settings, trainset, out, kinds[optimizer], metrics[metric], holdout, seed)
        )
    except ConfigurationError as exc:
        fail(str(exc), ExitCode.CONFIGURATION)
    except ImportError as exc:
        fail(
            f"{exc}: the {optimizer} optimizer needs optuna: pip install 'ragbus[optimize]'",
            ExitCode.CONFIGURATION,
        )
    except OSError as exc:
        fail(f"cannot write the program to {out}: {exc.strerror or exc}", ExitCode.CONFIGURATION)
    except KeyboardInterrupt:
        fail("interrupted: no program written", ExitCode.INTERRUPTED)


async def _optimize(
    settings: Settings,
    trainset: Path,
    out: Path,
    optimizer: OptimizerKind,
    metric_kind: MetricKind,
    holdout: float,
    seed: int,
) -> None:
    from ragbus.handlers.generate import GenerateHandler
    from ragbus.lm import build_lm, is_extractive
    from ragbus.optimize.compiler import compile_program, demo_count, prepare, save_program, score
    from ragbus.optimize.metrics import MetricKind, build_metric
    from ragbus.optimize.trainset import read_trainset, split
    from ragbus.retrieval.factory import build_retriever

    read = read_trainset(trainset)
    if read.unlabelled:
        lines = ", ".join(str(number) for number in read.unlabelled[:10])
        typer.echo(
            f"skipped {len(read.unlabelled)} examples without an answer (lines {lines}"
            f"{', ...' if len(read.unlabelled) > 10 else ''}): write their answers to use them",
            err=True,
        )
    train, held_out = split(read.examples, holdout, seed=seed)
    lm = build_lm(settings)
    metric = build_metric(metric_kind, lm)
    retriever = build_retriever(settings)
    train_set = await prepare(train, retriever, settings.top_k)
    held_set = await prepare(held_out, retriever, settings.top_k)
    typer.echo(
        f"{len(train)} examples to train on, {len(held_out)} held out; "
        f"model {lm.model}, optimizer {optimizer.value}, metric {metric_kind.value}"
    )
    before = await score(GenerateHandler(lm), held_set, metric)
    typer.echo(f"score before: {before:.3f} (the program as written)")
    import asyncio

    compiled = await asyncio.to_thread(
        compile_program,
        lm,
        train_set,
        metric,
        optimizer=optimizer,
        exact=metric_kind == MetricKind.EXACT,
    )
    save_program(compiled, out)
    after = await score(GenerateHandler(lm, program=out), held_set, metric)
    typer.echo(f"score after:  {after:.3f} (compiled: {demo_count(compiled)} worked examples)")
    if is_extractive(lm):
        typer.echo(
            "note: the offline LM quotes the passages, so worked examples and instructions "
            "do not change its answers; set RAGBUS_LM_MODEL to optimize for a real LM",
            err=True,
        )
    typer.echo(f"wrote {out}; serve it with: RAGBUS_PROGRAM={out} ragbus worker ...")


def trainset(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Exported JSON: `ragbus dlq export` files, answer_generated events "
            "(`ragbus ask --json`, `ragbus send`), query_received or documents_retrieved "
            "events; '-' for stdin."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Append the lines to this file (default: stdout)."),
    ] = None,
) -> None:
    """Turn exported answers and dead letters into trainset lines for `ragbus optimize`.

    Each question becomes one line: an answer_generated event's answer becomes its
    "answer" (check and correct it); a dead letter's question gets "answer": null, to
    write (`ragbus optimize` skips lines without one); a documents_retrieved event's
    passages become its "context". A question already written is not repeated.
    """
    from ragbus.files import ensure_private
    from ragbus.optimize.trainset import exported_lines
    from ragbus.publishing import iter_json_values

    configure_logging(False)
    values: list[object] = []
    for file in files:
        if str(file) == "-":
            text = sys.stdin.read()
        elif not file.is_file():
            fail(f"file does not exist: {file}", ExitCode.CONFIGURATION)
        else:
            text = file.read_text(encoding="utf-8", errors="replace")
        try:
            values.extend(iter_json_values(text))
        except ValueError as exc:
            fail(f"{file} is not JSON or JSON lines: {exc}", ExitCode.CONFIGURATION)
    made = list(exported_lines(values))
    lines = [json.dumps(line, ensure_ascii=False) for line in made]
    if out is None:
        for line in lines:
            typer.echo(line)
    else:
        ensure_private(out)  # questions and answers of users: readable by you only
        with out.open("a", encoding="utf-8") as written:
            written.writelines(line + "\n" for line in lines)
    answered = sum(1 for line in made if line["answer"] is not None)
    typer.echo(
        f"{len(made)} questions: {answered} with an answer to check, "
        f"{len(made) - answered} to answer",
        err=True,
    )
