"""What an example needs from its deployment, read from its text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragbus.config import Settings
from tests.docs.shell import Command

#: The gateway's default port (``RAGBUS_GATEWAY_PORT``).
GATEWAY_PORT = int(Settings.model_fields["gateway_port"].default)


@dataclass(frozen=True)
class Needs:
    """What an example needs from its deployment, read from its text.

    Parameters:
        rabbitmq: it uses RabbitMQ (``--bus rabbitmq``, ``bus="rabbitmq"``, an AMQP client).
        redis: it uses Redis (a ``redis://`` URL or ``RAGBUS_CACHE_URL``).
        workers: it asks or publishes over RabbitMQ without starting workers itself.
        gateway: it calls the gateway's port without starting ``ragbus serve`` itself.
        dead_letters: it operates the dead-letter queues (``ragbus dlq``).
        node: it is JavaScript, run with Node.js.
        embedding_port: the port of the embedding server it names on this machine
            (``RAGBUS_EMBED_API_BASE=http://localhost:PORT/...``), where the tests'
            stand-in (:mod:`tests.lm_server`) takes the model's place; None if none.
    """

    rabbitmq: bool = False
    redis: bool = False
    workers: bool = False
    gateway: bool = False
    dead_letters: bool = False
    node: bool = False
    embedding_port: int | None = None


_RABBITMQ = re.compile(
    r"--bus[ =]rabbitmq|bus=\"rabbitmq\"|RAGBUS_BUS=rabbitmq|amqp://|require\(\"amqplib\"\)"
    r"|from \"amqplib\"|import pika"
)
_REDIS = re.compile(r"redis://|RAGBUS_CACHE_URL")
_EMBEDDING_SERVER = re.compile(r"RAGBUS_EMBED_API_BASE=http://(?:localhost|127\.0\.0\.1):(\d+)")
_GATEWAY_URL = re.compile(rf"(?:localhost|127\.0\.0\.1):{GATEWAY_PORT}\b")


def needs_of(language: str, source: str, commands: list[Command]) -> Needs:
    """What an example in ``language`` with ``source`` (and, for shell, ``commands``)
    needs besides what it starts itself."""
    rabbitmq = bool(_RABBITMQ.search(source))
    starts_workers = any(command.service == "worker" for command in commands)
    starts_gateway = any(command.service == "serve" for command in commands)
    embedding = _EMBEDDING_SERVER.search(source)
    return Needs(
        rabbitmq=rabbitmq,
        redis=bool(_REDIS.search(source)),
        workers=rabbitmq and not starts_workers,
        gateway=bool(_GATEWAY_URL.search(source)) and not starts_gateway,
        dead_letters="ragbus dlq" in source,
        node=language == "javascript",
        embedding_port=int(embedding[1]) if embedding else None,
    )
