"""What the ``ragbus`` commands share: options, settings, one-line errors, logging."""

from __future__ import annotations

import logging
import sys
from collections.abc import Coroutine
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, TypeVar

import typer

# Only what the commands' options name, and plain exceptions, load with the commands:
# pydantic (the settings, the events) loads when a command runs, not for ``--help``.
from ragbus.config.kinds import BusKind
from ragbus.config.redaction import protect, redact
from ragbus.errors import AnswerTimeout, ConfigurationError, InvalidEvent, RagbusError

if TYPE_CHECKING:
    from ragbus.config.settings import Settings
    from ragbus.pipeline import Pipeline

T = TypeVar("T")


class ExitCode(IntEnum):
    """What a ``ragbus`` command's exit status means; scripts can act on each."""

    OK = 0
    #: the command ran and reports a failure (a replay with failed republishes, ...)
    FAILED = 1
    #: the command line is wrong (typer's own usage errors exit 2 too)
    USAGE = 2
    #: a setting, a path or an input file is wrong
    CONFIGURATION = 3
    #: the broker (or another service) cannot be reached
    UNAVAILABLE = 4
    #: no answer came within the time asked for
    TIMEOUT = 5
    #: Ctrl-C
    INTERRUPTED = 130


BusOption = Annotated[
    BusKind | None,
    typer.Option("--bus", help="memory (in-process, default) or rabbitmq; env RAGBUS_BUS."),
]
AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="The pipeline: a built-in name (rag, analyzer) or module:attribute of your "
        "own ragbus.Pipeline; env RAGBUS_APP; default rag.",
    ),
]
CorpusOption = Annotated[
    Path | None,
    typer.Option(
        "--corpus",
        help="Folder of .md/.txt/.jsonl documents or an index from `ragbus index`; "
        "env RAGBUS_CORPUS; default: the bundled ragbus guide.",
    ),
]


LogFormatOption = Annotated[
    Literal["text", "json"] | None,
    typer.Option(
        "--log-format",
        help="Log lines as text or one JSON object per line, each line about an event "
        "with its correlation id; env RAGBUS_LOG_FORMAT (default text).",
        show_default=False,
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear error line to stderr (secrets redacted) and exit with ``code``
    (default 1)."""
    typer.echo(f"error: {redact(message)}", err=True)
    raise typer.Exit(code)


def configure_logging(verbose: bool) -> None:
    """Log warnings (or everything from ragbus with ``verbose``) to stderr."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if verbose:
        logging.getLogger("ragbus").setLevel(logging.INFO)
    protect(None)


def settings_from(**overrides: object) -> Settings:
    """Settings from the environment with command-line overrides; bad values exit clearly.
    From here on, their secrets are redacted from whatever this process prints."""
    from pydantic import ValidationError

    from ragbus.config.settings import load_settings
    from ragbus.events import describe_validation_error

    try:
        settings = load_settings(**overrides)
    except ValidationError as exc:
        fail(
            describe_validation_error(exc).replace("invalid event", "invalid setting"),
            ExitCode.CONFIGURATION,
        )
    protect(settings)
    return settings


def observe(settings: Settings, service: str, *, logs: bool = True) -> None:
    """Write log lines in ``settings.log_format`` (with ``logs``) and trace as the
    ``OTEL_*`` variables say (see :mod:`ragbus.observability`); a bad ``OTEL_*`` value
    exits with one line.

    Parameters:
        settings: this process's settings.
        service: the default ``service.name`` of its spans, e.g. ``ragbus-worker``.
        logs: apply the log format too (default true; commands that print results keep
            the plain format).
    """
    from ragbus.observability import tracing
    from ragbus.observability.logs import use_log_format

    if logs:
        use_log_format(settings.log_format)
    try:
        tracing.configure(service, instance_id=settings.worker_id)
    except ConfigurationError as exc:
        fail(str(exc), ExitCode.CONFIGURATION)


def load_pipeline(settings: Settings) -> Pipeline:
    """The pipeline ``settings.app`` names; a bad name exits with one line."""
    from ragbus.apps import load_app

    try:
        return load_app(settings.app)
    except ConfigurationError as exc:
        fail(str(exc), ExitCode.CONFIGURATION)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine``, turning ragbus's expected errors into one line each."""
    # here, not at the top: ``ragbus --help`` needs neither asyncio nor pydantic
    import asyncio

    from pydantic import ValidationError

    from ragbus.bus.errors import BrokerRefusedError, BrokerUnavailableError
    from ragbus.events import describe_validation_error

    try:
        return asyncio.run(coroutine)
    except ValidationError as exc:
        fail(describe_validation_error(exc).replace("invalid event: ", ""))
    except BrokerUnavailableError as exc:
        fail(str(exc), ExitCode.UNAVAILABLE)
    except (BrokerRefusedError, ConfigurationError) as exc:
        fail(str(exc), ExitCode.CONFIGURATION)
    except (RagbusError, InvalidEvent, AnswerTimeout) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
