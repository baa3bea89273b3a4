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
- a Redis URL on the default port becomes the test Redis, with a key namespace of its own;
- an embedding server on this machine (``RAGBUS_EMBED_API_BASE=http://localhost:11434``)
  becomes the tests' stand-in embedding server, on its own port.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
import uuid
from pathlib import Path

import httpx

from ragbus.config import Settings
from ragbus.pipelines.rag import STAGE_NAMES
from tests.amqp import Namespace
from tests.docs.needs import GATEWAY_PORT, Needs
from tests.docs.seeds import NOTES, dead_letters
from tests.docs.shell import Command
from tests.lm_server import FakeLMServer, start_lm_server
from tests.polling import wait_until
from tests.process.workers import OPS_LINE, WorkerProcess, Workers

#: The folder of the documentation's worked examples (``--app docs_example:pipeline``).
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

#: Stage names of the built-in analyzer and of the worked example, besides RAG's.
EXAMPLE_STAGES = ("analyze", "clean", "read")

#: The line ``ragbus serve`` prints before it binds.
GATEWAY_LINE = re.compile(r"ragbus gateway on http://(?P<host>[^\s:/]+):(?P<port>\d+)/")

_DEFAULT_AMQP_URL = re.compile(r"amqp://guest:guest@(?:localhost|127\.0\.0\.1):5672/")
_DEFAULT_REDIS_URL = re.compile(r"redis://(?:localhost|127\.0\.0\.1):6379/\d+")
_DEFAULT_EXCHANGE = Settings.model_fields["exchange"].default
_EXCHANGE_NAME = re.compile(rf"(?<![\w.-]){re.escape(_DEFAULT_EXCHANGE)}(?![\w-]|\.\w)")
_URL_PORT = re.compile(r"(?P<host>localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\]):(?P<port>\d{2,5})\b")
_PORT_OPTION = re.compile(r"(?P<flag>--port[ =])(?P<port>\d+)\b")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
            # the stages any example's workers may declare: the built-in apps' and those
            # of the worked example of docs/pipelines.md
            self.namespace.stages.update(STAGE_NAMES, EXAMPLE_STAGES)
            self.namespace.make()  # so cleanup knows the topology's queue names
        self.redis_url = redis_url
        self.cache_namespace = f"test-{uuid.uuid4().hex[:10]}"
        self.ports: dict[int, int] = {}
        self.rewrites: dict[str, str] = {}
        self.services: list[WorkerProcess] = []
        self.workers: Workers | None = None
        self.embedding_server: FakeLMServer | None = None
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
            # docs/pipelines.md runs its worked example "with it on PYTHONPATH"
            PYTHONPATH=os.pathsep.join(filter(None, [str(EXAMPLES), env.get("PYTHONPATH")])),
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
        and ``exec`` so that signals reach ragbus itself. A worker whose line names no
        port runs as written: it takes 9100, or a free port when that is taken, and logs
        which (the line its readiness is read from)."""
        text = self.rewrite(command.text)
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

        await wait_until(
            ready,
            what=f"{process.name}'s /readyz to answer 200",
            timeout=60,
            interval=0.1,
            report=process.describe,
        )

    async def provide(self) -> None:
        """Start what the example needs but does not start itself (see :class:`Needs`)."""
        if self.needs.embedding_port is not None:
            self.embedding_server = start_lm_server()
            self.ports[self.needs.embedding_port] = self.embedding_server.port
        if self.needs.workers:
            assert self.namespace is not None
            self.workers = Workers(self.logs, namespace=self.namespace)
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
        """Stop every process (and the embedding server), delete the RabbitMQ namespace
        and the Redis keys."""
        if self.embedding_server is not None:
            self.embedding_server.stop()
        for service in self.services:
            if service.alive:
                service.kill()
        if self.workers is not None:
            await self.workers.close()
        if self.namespace is not None:
            await self.namespace.cleanup()
        if self.redis_url is not None:
            await self._delete_cache_keys()

    async def cache_keys(self) -> list[bytes]:
        """The keys of this example's cache namespace in Redis (none without Redis)."""
        if self.redis_url is None:
            return []
        from redis.asyncio import Redis

        client = Redis.from_url(self.redis_url)
        try:
            return [key async for key in client.scan_iter(match=f"{self.cache_namespace}*")]
        finally:
            await client.aclose()

    async def _delete_cache_keys(self) -> None:
        """Delete the keys of this example's cache namespace (and only those)."""
        from redis.asyncio import Redis

        keys = await self.cache_keys()
        if keys:
            client = Redis.from_url(self.redis_url or "")
            try:
                await client.delete(*keys)
            finally:
                await client.aclose()
