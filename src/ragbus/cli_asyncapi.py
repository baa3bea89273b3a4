"""``ragbus asyncapi``: the AsyncAPI 3.0 document of the app's pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ragbus.cli_common import AppOption, ExitCode, fail, load_pipeline, settings_from


def asyncapi(
    app: AppOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the document to this file (default: stdout)."),
    ] = None,
) -> None:
    """Print (or write) the AsyncAPI 3.0 document of the app's pipeline on RabbitMQ: the
    exchange, each event type's routing key, the stage queues and sinks, and each
    message with its payload schema and an example.

    Names follow RAGBUS_EXCHANGE, RAGBUS_QUEUE_PREFIX and the first host of
    RAGBUS_AMQP_URL (never its credentials). The gateway serves the same document at
    /asyncapi.json.
    """
    from ragbus.asyncapi import asyncapi_document

    settings = settings_from(app=app)
    pipeline = load_pipeline(settings)
    document = asyncapi_document(
        pipeline,
        exchange=settings.exchange,
        queue_prefix=settings.queue_prefix,
        amqp_url=settings.amqp_url.get_secret_value(),
    )
    text = json.dumps(document, indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}", ExitCode.CONFIGURATION)
    typer.echo(f"wrote the AsyncAPI document of {pipeline.name} to {out}", err=True)
