"""Where an example runs: a deployment of its own on a machine shared with others.

Each example gets a fresh working directory, a fresh ``$HOME`` (with a ``notes`` folder
of documents, for examples that index ``~/notes``), the virtual environment's ``bin``
first on ``PATH``, and, when it uses RabbitMQ, a fresh exchange and queue prefix
(deleted afterwards). What it needs but does not start itself is provided: worker
processes for a RabbitMQ client, a gateway for a ``curl``, dead letters for the
``ragbus dlq`` commands.

Names that would collide with other users of the machine are the only thing changed in
an example's text, and each change is recorded in :attr:`Sandbox.rewrites`:

- the ports of the services it starts or calls (``localhost:8000``, ``--port 9101``)
  become free ports; a service started without ``--port`` gets one;
- the default RabbitMQ URL and exchange (``amqp://guest:guest@localhost:5672/``,
  ``ragbus.events``) become the test broker and the example's own exchange; ``ragbus``
  commands get theirs from ``RAGBUS_AMQP_URL``, ``RAGBUS_EXCHANGE`` and
  ``RAGBUS_QUEUE_PREFIX``;
- a Redis URL on the default port becomes the test Redis, with a key namespace of its own.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import socket
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from ragbus.cli import worker as worker_command
from ragbus.config import Settings
from ragbus.pipelines.rag import STAGE_NAMES
from tests.amqp import Namespace
from tests.docs.shell import Command
from tests.process.workers import OPS_LINE, WorkerProcess, Workers, poll

#: The gateway's default port (``RAGBUS_GATEWAY_PORT``).
GATEWAY_PORT = int(Settings.model_fields["gateway_port"].default)
#: ``ragbus worker``'s default ``--port`` (its /healthz and /metrics).
WORKER_PORT = int(inspect.signature(worker_command).parameters["port"].default)

#: The line ``ragbus serve`` prints before it binds.
GATEWAY_LINE = re.compile(r"ragbus gateway on http://(?P<host>[^\s:/]+):(?P<port>\d+)/")

_DEFAULT_AMQP_URL = re.compile(r"amqp://guest:guest@(?:localhost|127\.0\.0\.1):5672/")
_DEFAULT_REDIS_URL = re.compile(r"redis://(?:localhost|127\.0\.0\.1):6379/\d+")
_DEFAULT_EXCHANGE = Settings.model_fields["exchange"].default
_EXCHANGE_NAME = re.compile(rf"(?<![\w.-]){re.escape(_DEFAULT_EXCHANGE)}(?![\w-]|\.\w)")
_URL_PORT = re.compile(r"(?P<host>localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\]):(?P<port>\d{2,5})\b")
_PORT_OPTION = re.compile(r"(?P<flag>--port[ =])(?P<port>\d+)\b")

#: Documents in ``~/notes`` for examples that index a folder of the reader's own.
NOTES = {
    "release.md": "# Release plan\n\nThe release is on Friday, after the last review.\n",
    "ferns.md": "# Ferns\n\nFerns are plants that reproduce with spores instead of seeds.\n",
}

#: A dead letter shown by id in the README (``ragbus dlq show 3f2a9c1e``).
SHOWN_DEAD_LETTER = uuid.UUID("3f2a9c1e-7b4d-4c2a-9e51-0d6f8a2b7c13")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
    """

    rabbitmq: bool = False
    redis: bool = False
    workers: bool = False
    gateway: bool = False
    dead_letters: bool = False
    node: bool = False


_RABBITMQ = re.compile(
    r"--bus[ =]rabbitmq|bus=\"rabbitmq\"|RAGBUS_BUS=rabbitmq|amqp://|require\(\"amqplib\"\)"
    r"|from \"amqplib\"|import pika"
)
_REDIS = re.compile(r"redis://|RAGBUS_CACHE_URL")
_GATEWAY_URL = re.compile(rf"(?:localhost|127\.0\.0\.1):{GATEWAY_PORT}\b")


def needs_of(language: str, source: str, commands: list[Command]) -> Needs:
    """What an example in ``language`` with ``source`` (and, for shell, ``commands``)
    needs besides what it starts itself."""
    rabbitmq = bool(_RABBITMQ.search(source))
    starts_workers = any(command.service == "worker" for command in commands)
    starts_gateway = any(command.service == "serve" for command in commands)
    return Needs(
        rabbitmq=rabbitmq,
        redis=bool(_REDIS.search(source)),
        workers=rabbitmq and not starts_workers,
        gateway=bool(_GATEWAY_URL.search(source)) and not starts_gateway,
        dead_letters="ragbus dlq" in source,
        node=language == "javascript",
    )


class Sandbox:
    """The deployment one example runs in; :meth:`close` stops and deletes what it made.

    Parameters:
        directory: an empty folder of the example's own.
        needs: what to provide (see :class:`Needs`).
        amqp_url: the test broker (required when ``needs.rabbitmq``).
        redis_url: the test Redis (required when ``needs.redis``).
    """

    def __init__(
        self,
        directory: Path,
        needs: Needs,
        *,
        amqp_url: str | None = None,
        redis_url: str | None = None,
    ) -> None:
        self.needs = needs
        self.workdir = directory / "work"
        self.home = directory / "home"
        self.logs = directory / "logs"
        for folder in (self.workdir, self.home / "notes", self.logs):
            folder.mkdir(parents=True)
        for name, text in NOTES.items():
            (self.home / "notes" / name).write_text(text)
        self.namespace = Namespace(amqp_url) if amqp_url else None
        if self.namespace is not None:
            self.namespace.stages.update(STAGE_NAMES)
            self.namespace.make()  # so cleanup knows the topology's queue names
        self.redis_url = redis_url
        self.cache_namespace = f"test-{uuid.uuid4().hex[:10]}"
        self.ports: dict[int, int] = {}
        self.rewrites: dict[str, str] = {}
        self.services: list[WorkerProcess] = []
        self.workers: Workers | None = None
        self.env = self._environment()

    def _environment(self) -> dict[str, str]:
        """This process's environment without ``RAGBUS_`` settings, plus the sandbox's."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("RAGBUS_")}
        cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        env.update(
            HOME=str(self.home),
            XDG_CACHE_HOME=cache_home,  # pip's and npm's caches stay where they were
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
            LITELLM_LOCAL_MODEL_COST_MAP="true",
            RAGBUS_CACHE_NAMESPACE=self.cache_namespace,
            RAGBUS_GATEWAY_PORT=str(self.port_for(GATEWAY_PORT)),
        )
        env.pop("VIRTUAL_ENV", None)
        if self.namespace is not None:
            env.update(
                RAGBUS_AMQP_URL=self.namespace.url,
                RAGBUS_EXCHANGE=self.namespace.exchange,
                RAGBUS_QUEUE_PREFIX=self.namespace.prefix,
            )
        if self.redis_url is not None:
            env["RAGBUS_CACHE_URL"] = self.redis_url
        return env

    # -- names ----------------------------------------------------------------------

    def port_for(self, port: int) -> int:
        """The free port that stands for ``port`` in this example (0 stays 0)."""
        if port <= 0:
            return port
        if port not in self.ports:
            self.ports[port] = free_port()
        return self.ports[port]

    def rewrite(self, text: str) -> str:
        """``text`` with the names of this deployment (see the module docstring)."""

        def record(old: str, new: str) -> str:
            if old != new:
                self.rewrites[old] = new
            return new

        def url_port(match: re.Match[str]) -> str:
            port = int(match["port"])
            if port not in self.ports:
                return match[0]
            return record(match[0], f"{match['host']}:{self.ports[port]}")

        def port_option(match: re.Match[str]) -> str:
            return record(match[0], f"{match['flag']}{self.port_for(int(match['port']))}")

        text = _PORT_OPTION.sub(port_option, text)
        text = _URL_PORT.sub(url_port, text)
        if self.namespace is not None:
            url, exchange = self.namespace.url, self.namespace.exchange
            text = _DEFAULT_AMQP_URL.sub(lambda match: record(match[0], url), text)
            text = _EXCHANGE_NAME.sub(lambda match: record(match[0], exchange), text)
        if self.redis_url is not None:
            redis = self.redis_url
            text = _DEFAULT_REDIS_URL.sub(lambda match: record(match[0], redis), text)
        return text

    def service_command(self, command: Command) -> str:
        """A ``ragbus worker`` / ``ragbus serve`` line as it is started here: rewritten,
        a worker given its port when the line names none, ``exec`` so that signals reach
        ragbus itself."""
        text = self.rewrite(command.text)
        if command.service == "worker" and not _PORT_OPTION.search(command.text):
            port = self.port_for(WORKER_PORT)
            text = text.replace("ragbus worker", f"ragbus worker --port {port}", 1)
            self.rewrites["ragbus worker"] = f"ragbus worker --port {port}"
        return f"{command.assignments}exec {text[len(command.assignments) :]}"

    # -- services -------------------------------------------------------------------

    async def start_service(self, command: Command) -> WorkerProcess:
        """Start a service line of the example and wait until it is ready."""
        name = f"{command.service}-{len(self.services) + 1}"
        process = WorkerProcess(
            name=name,
            argv=["bash", "-c", self.service_command(command)],
            env=self.env,
            cwd=self.workdir,
            log_path=self.logs / f"{name}.log",
            ready=GATEWAY_LINE if command.service == "serve" else OPS_LINE,
        )
        process.start()
        self.services.append(process)
        await process.wait_ready(timeout=60)
        if command.service == "serve":
            await self._wait_gateway_ready(process)
        return process

    async def _wait_gateway_ready(self, process: WorkerProcess) -> None:
        async def ready() -> bool:
            try:
                async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
                    response = await client.get(process.url("/readyz"))
            except httpx.TransportError:
                return False
            return response.status_code == 200

        await poll(
            ready,
            timeout=60,
            interval=0.1,
            message=lambda: f"{process.name}: /readyz never answered 200\n{process.describe()}",
        )

    async def provide(self) -> None:
        """Start what the example needs but does not start itself (see :class:`Needs`)."""
        if self.needs.workers:
            assert self.namespace is not None
            self.workers = Workers(self.namespace, self.logs)
            await self.workers.start("all", timeout=60)
        if self.needs.gateway:
            bus = " --bus rabbitmq" if self.needs.rabbitmq else ""
            await self.start_service(Command(f"ragbus serve{bus}", service="serve"))
        if self.needs.dead_letters:
            await self._seed_dead_letters()

    async def _seed_dead_letters(self) -> None:
        """Dead letters for the ``ragbus dlq`` examples, added with ``ragbus dlq import``
        (the one the README shows by id among them)."""
        seed = self.logs / "dead-letters.jsonl"
        seed.write_text("".join(json.dumps(letter) + "\n" for letter in dead_letters()))
        bus = ["--bus", "rabbitmq"] if self.needs.rabbitmq else []
        process = await asyncio.create_subprocess_exec(
            "ragbus",
            "dlq",
            "import",
            str(seed),
            *bus,
            env=self.env,
            cwd=self.workdir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        assert process.returncode == 0, f"seeding dead letters failed: {output.decode()}"

    def describe(self) -> str:
        """Every service's state and log tail, for a failure message."""
        described = [service.describe() for service in self.services]
        if self.workers is not None:
            described.append(self.workers.report())
        return "\n".join(described)

    async def stop_services(self, grace: float = 30.0) -> list[str]:
        """SIGTERM every service the example started, as Ctrl-C in its terminal would;
        what did not exit 0 within ``grace`` seconds (then killed) is returned."""
        problems = []
        for service in self.services:
            if not service.alive:
                problems.append(f"{service.name} had exited {service.returncode}")
                continue
            service.terminate()
        for service in self.services:
            try:
                code = await service.wait_exit(grace)
            except AssertionError:
                service.kill()
                problems.append(f"{service.name} still running {grace:g}s after SIGTERM")
                continue
            if code != 0:
                problems.append(f"{service.name} exited {code} after SIGTERM")
        return problems

    async def close(self) -> None:
        """Stop every process, delete the RabbitMQ namespace and the Redis keys."""
        for service in self.services:
            if service.alive:
                service.kill()
        if self.workers is not None:
            await self.workers.close()
        if self.namespace is not None:
            await self.namespace.cleanup()
        if self.redis_url is not None:
            await self._delete_cache_keys()

    async def _delete_cache_keys(self) -> None:
        """Delete the keys of this example's cache namespace (and only those)."""
        from redis.asyncio import Redis

        client = Redis.from_url(self.redis_url or "")
        try:
            keys = [key async for key in client.scan_iter(match=f"{self.cache_namespace}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


def dead_letters() -> list[dict[str, object]]:
    """Dead letters as ``ragbus dlq export`` writes them: a generate failure (the LM
    server failed five times; replayable), a retrieve ``invalid`` and a ``failed`` one."""
    now = datetime.now(UTC).isoformat()
    question = "How does ragbus handle a failed event?"
    retrieved = {
        "id": "ddb48a6c-b4cb-59d9-aeec-a6816b2199bf",
        "type": "documents_retrieved",
        "version": 1,
        "correlation_id": "e4d051d2-a2e3-483d-8133-c9ba3fa42e7e",
        "causation_id": "e4d051d2-a2e3-483d-8133-c9ba3fa42e7e",
        "created_at": now,
        "payload": {
            "question": question,
            "passages": [
                {
                    "doc_id": "failures.md#0",
                    "title": "How ragbus handles a failed event",
                    "text": "When an event fails, ragbus classifies the failure once.",
                    "score": 3.2,
                }
            ],
            "history": [],
            "timings_ms": {"retrieve": 0.5},
        },
    }
    record = {"first_failed_at": now, "last_failed_at": now, "worker_id": "docs:1"}
    return [
        {
            "id": str(SHOWN_DEAD_LETTER),
            "stage": "generate",
            "reason": "failed",
            "error_type": "LMServerError",
            "error_message": "503 Service Unavailable",
            "attempts": 5,
            "envelope": retrieved,
            **record,
        },
        {
            "id": str(uuid.uuid4()),
            "stage": "retrieve",
            "reason": "invalid",
            "error_type": "InvalidEvent",
            "error_message": "payload.question: String should have at least 1 character",
            "attempts": 1,
            "envelope": {"type": "query_received", "payload": {"question": ""}},
            **record,
        },
        {
            "id": str(uuid.uuid4()),
            "stage": "generate",
            "reason": "failed",
            "error_type": "TimeoutError",
            "error_message": "the handler took longer than 60s",
            "attempts": 5,
            "envelope": {**retrieved, "id": str(uuid.uuid4())},
            **record,
        },
    ]
