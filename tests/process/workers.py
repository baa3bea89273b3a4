"""The processes of the tests, started as users start them, and what the tests count with.

This is the one place that starts processes for the suite:

- :class:`Workers` starts ``ragbus worker`` processes (or any other entry point) with
  exactly the :class:`~ragbus.config.Settings` a test states (optionally in a RabbitMQ
  test namespace, whose cleanup then knows every queue they declare), waits until each
  is ready (the line that names its ops port, then ``/healthz``), signals, kills and
  waits for them, keeps each one's output in a file for failure messages, runs one-shot
  commands (``ragbus ask``, ``publish``, ...), and stops every child in
  :meth:`Workers.close`. Children start through :mod:`tests.process.launcher`, so none
  outlives a killed test run.
- :class:`Supervisor` restarts a worker whenever it dies, as systemd or compose would.
- :class:`AnswerLog` records every ``answer_generated`` event a test bus receives.
- :class:`Metrics` parses a worker's ``/metrics``.
- :func:`broker_stop_app` / :func:`broker_start_app` stop and start the local broker
  with ``rabbitmqctl``, and refuse to without ``RAGBUS_TEST_BROKER_RESTART=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import aio_pika
import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from ragbus.bus.base import InboundMessage
from ragbus.config import BusKind, Settings
from ragbus.pipelines.rag import pipeline as rag
from tests.amqp import Namespace
from tests.polling import wait_until

#: The line a ``ragbus worker`` logs once it consumes and serves its ops endpoints.
OPS_LINE = re.compile(r"/healthz and /metrics on http://(?P<host>\S+?):(?P<port>\d+)")

#: The line ``ragbus serve`` prints first; the port then answers ``/healthz``.
GATEWAY_LINE = re.compile(r"ragbus gateway on http://(?P<host>[^:/]+):(?P<port>\d+)/")

#: The line :mod:`tests.process.poison_worker` logs once it consumes.
POISON_READY = re.compile(r"poison worker \S+ ready")

#: The program every child starts through (see its docstring).
LAUNCHER = Path(__file__).with_name("launcher.py")


class WorkerFailed(AssertionError):
    """A worker did not become ready, or did not stop as it should have."""


# -- settings as a process sees them --------------------------------------------------


def _encoded(value: object) -> str:
    """A setting's value as ``RAGBUS_<NAME>`` spells it."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, tuple | list):
        return json.dumps(list(value))
    return str(value)


def settings_environment(settings: Settings, **overrides: object) -> dict[str, str]:
    """``RAGBUS_*`` variables that give a process ``settings`` (each field that differs
    from its default), with ``overrides`` on top (``lm_latency_ms=200`` or strings as
    the environment spells them, e.g. ``redelivery_delays_s="[0.5]"``)."""
    env: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        if value == info.get_default(call_default_factory=True):
            continue
        if value is None:
            raise ValueError(f"{name}: None cannot be set through the environment")
        env[f"RAGBUS_{name.upper()}"] = _encoded(value)
    env.update({f"RAGBUS_{name.upper()}": _encoded(value) for name, value in overrides.items()})
    return env


def process_environment(settings: Settings, **overrides: object) -> dict[str, str]:
    """The whole environment of a ragbus process: this process's environment without
    any ``RAGBUS_`` variable, plus :func:`settings_environment`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAGBUS_")}
    env.update(PYTHONUNBUFFERED="1", LITELLM_LOCAL_MODEL_COST_MAP="true")
    env.update(settings_environment(settings, **overrides))
    # one worker process per command unless a test asks for a pool (default: per core)
    env.setdefault("RAGBUS_WORKER_PROCESSES", "1")
    return env


def settings_in(env: Mapping[str, str]) -> Settings:
    """The settings a process with environment ``env`` runs with (no ``.env`` file);
    raises pydantic's ``ValidationError`` for a value the process would refuse."""
    with mock.patch.dict(os.environ, env, clear=True):
        return Settings(_env_file=None)


def launched(argv: list[str]) -> list[str]:
    """``argv`` run through :mod:`tests.process.launcher`: it dies with this process."""
    return [sys.executable, "-S", str(LAUNCHER), str(os.getpid()), *argv]


def ragbus_command(*arguments: str) -> list[str]:
    """``python -m ragbus.cli ARGUMENTS`` with this interpreter."""
    return [sys.executable, "-m", "ragbus.cli", *arguments]


@dataclass(frozen=True)
class Completed:
    """A finished command: exit code, stdout and stderr."""

    code: int
    stdout: str
    stderr: str


@dataclass
class WorkerProcess:
    """One child process and its log (see :meth:`Workers.spawn`)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    ready: re.Pattern[str] = OPS_LINE
    process: subprocess.Popen[bytes] | None = None
    port: int | None = None

    def start(self) -> None:
        """Start the process (again, if it ran before); stderr and stdout go to the log."""
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        self.port = None
        with self.log_path.open("ab") as log:
            log.write(f"--- start {' '.join(self.argv[1:])}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                launched(self.argv),
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C of the test run does not reach it
            )

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def log(self) -> str:
        """Everything the process wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self, lines: int = 40) -> str:
        """Name, pid, state and the last ``lines`` lines of the log."""
        state = "running" if self.alive else f"exited {self.returncode}"
        tail = "\n".join(self.log.splitlines()[-lines:])
        pid = self.process.pid if self.process is not None else "-"
        return f"== {self.name} (pid {pid}, {state}) ==\n{tail}"

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for the ready line (and, with an ops port, for ``/healthz`` to answer 200)."""
        deadline = time.monotonic() + timeout
        offset = max(self.log.rfind("--- start"), 0)
        found: list[re.Match[str]] = []

        def ready() -> bool:
            match = self.ready.search(self.log, offset)
            if match is None and not self.alive:
                raise WorkerFailed(f"{self.name} exited before it was ready\n{self.describe()}")
            if match is not None:
                found.append(match)
            return match is not None

        await wait_until(
            ready,
            what=f"{self.name} to log that it is ready",
            timeout=timeout,
            interval=0.05,
            report=self.describe,
        )
        if "port" not in found[0].groupdict():
            return
        self.port = int(found[0]["port"])
        await wait_until(
            self._is_healthy,
            what=f"{self.name}'s /healthz to answer 200",
            timeout=max(deadline - time.monotonic(), 1.0),
            interval=0.05,
            report=self.describe,
        )

    async def _is_healthy(self) -> bool:
        status, _ = await self.healthz()
        return status == 200

    def send(self, signum: int) -> None:
        """Send ``signum`` to the process (if it runs)."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signum)

    def kill(self) -> None:
        """``kill -9``: no cleanup, unacknowledged messages go back to the broker."""
        self.send(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM: a worker stops consuming, drains and exits 0."""
        self.send(signal.SIGTERM)

    async def wait_exit(self, timeout: float) -> int:
        """The exit code, once the process has exited (within ``timeout`` seconds)."""
        await wait_until(
            lambda: not self.alive,
            what=f"{self.name} to exit",
            timeout=timeout,
            report=self.describe,
        )
        code = self.returncode
        assert code is not None
        return code

    async def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then the exit code (a worker drains and exits 0)."""
        self.terminate()
        return await self.wait_exit(timeout)

    # -- ops endpoints --------------------------------------------------------------

    def url(self, path: str) -> str:
        if self.port is None:
            raise WorkerFailed(f"{self.name} has no known ops port")
        return f"http://127.0.0.1:{self.port}{path}"

    async def healthz(self) -> tuple[int, dict[str, object]]:
        """Status code and JSON of ``/healthz``; (0, {}) when nothing answers."""
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
                response = await client.get(self.url("/healthz"))
        except httpx.TransportError:
            return 0, {}
        return response.status_code, response.json()

    async def metrics_text(self) -> str:
        """The raw ``/metrics`` text."""
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            response = await client.get(self.url("/metrics"))
        response.raise_for_status()
        return response.text

    async def metrics(self) -> Metrics:
        """``/metrics``, parsed."""
        return Metrics.parse(await self.metrics_text())


@dataclass
class Metrics:
    """Parsed Prometheus samples: ``(sample name, sorted labels) -> value``."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    families: dict[str, str]  # family name -> type

    @classmethod
    def parse(cls, text: str) -> Metrics:
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        families: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            families[family.name] = family.type
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return cls(samples, families)

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels`` (0 if
        there is none)."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, sample_labels), value in self.samples.items()
            if sample == name and wanted <= set(sample_labels)
        )

    def has(self, name: str, **labels: str) -> bool:
        """Whether a sample called ``name`` with (at least) ``labels`` exists."""
        wanted = set(labels.items())
        return any(
            sample == name and wanted <= set(sample_labels)
            for sample, sample_labels in self.samples
        )


class Workers:
    """The processes of one test, all with the same base settings.

    Parameters:
        directory: where their logs go; also their working directory (no ``.env``).
        settings: what every process runs with (default: ragbus's defaults); each
            process may override some (see :meth:`spawn`).
        namespace: the RabbitMQ test namespace the processes serve (default none: the
            settings' own bus). Its cleanup learns the queues each process declares.
    """

    def __init__(
        self,
        directory: Path,
        settings: Settings | None = None,
        namespace: Namespace | None = None,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.namespace = namespace
        base = settings or Settings(_env_file=None)
        if namespace is not None:
            base = base.model_copy(
                update={
                    "bus": BusKind.RABBITMQ,
                    "amqp_url": SecretStr(namespace.url),
                    "exchange": namespace.exchange,
                    "queue_prefix": namespace.prefix,
                }
            )
        self.settings = base
        self.processes: list[WorkerProcess] = []
        self.supervisors: list[Supervisor] = []
        self._names: dict[str, int] = defaultdict(int)

    def _name(self, base: str) -> str:
        self._names[base] += 1
        return f"{base}-{self._names[base]}"

    def environment(self, **overrides: object) -> dict[str, str]:
        """The environment of a process with these settings ``overrides``; checked
        as the process will read it, and its queues told to the namespace."""
        env = process_environment(self.settings, **overrides)
        actual = settings_in(env)
        if self.namespace is not None:
            self.namespace.track(actual, rag.stage_names)
        return env

    def spawn(
        self,
        stages: str = "all",
        *,
        name: str | None = None,
        argv: list[str] | None = None,
        ready: re.Pattern[str] = OPS_LINE,
        **settings: object,
    ) -> WorkerProcess:
        """Start a process without waiting for it.

        Parameters:
            stages: the ``--stages`` of a ``ragbus worker`` (default all).
            name: its name in logs and as ``RAGBUS_WORKER_ID`` (default ``worker-N``).
            argv: run this command instead of ``ragbus worker --stages STAGES --port 0``.
            ready: the log line that says it is ready (default: the ops port line).
            settings: settings of this process on top of the base settings
                (``lm_latency_ms=200``, ``redelivery_delays_s=(0.5,)``).
        """
        name = name or self._name("worker")
        command = argv or ragbus_command("worker", "--stages", stages, "--port", "0")
        process = WorkerProcess(
            name=name,
            argv=command,
            env=self.environment(worker_id=name, **settings),
            cwd=self.directory,
            log_path=self.directory / f"{name}.log",
            ready=ready,
        )
        process.start()
        self.processes.append(process)
        return process

    async def start(
        self, stages: str = "all", *, timeout: float = 40.0, **options: Any
    ) -> WorkerProcess:
        """Start a process (see :meth:`spawn`) and wait until it is ready."""
        process = self.spawn(stages, **options)
        await process.wait_ready(timeout)
        return process

    async def start_many(
        self, count: int, stages: str = "all", *, timeout: float = 40.0, **options: Any
    ) -> list[WorkerProcess]:
        """Start ``count`` processes at once and wait until all are ready."""
        processes = [self.spawn(stages, **options) for _ in range(count)]
        await asyncio.gather(*(process.wait_ready(timeout) for process in processes))
        return processes

    async def run(
        self,
        *arguments: str,
        stdin: str | None = None,
        timeout: float = 60.0,
        **settings: object,
    ) -> Completed:
        """Run a one-shot ``ragbus ARGUMENTS`` (``ask``, ``publish``, ...) with the base
        settings and ``settings`` on top, in the workers' directory, to its end."""
        process = await asyncio.create_subprocess_exec(
            *launched(ragbus_command(*arguments)),
            env=self.environment(**settings),
            cwd=self.directory,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(timeout):
                out, err = await process.communicate(None if stdin is None else stdin.encode())
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(
                f"ragbus {' '.join(arguments)} still running after {timeout:g}s"
            ) from None
        assert process.returncode is not None
        return Completed(
            process.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )

    async def start_gateway(self, *arguments: str, **settings: object) -> tuple[WorkerProcess, str]:
        """Start ``ragbus serve --port <free> ARGUMENTS`` and wait until its ``/readyz``
        says 200; returns the process and its base URL."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        gateway = self.spawn(
            name="gateway",
            argv=ragbus_command("serve", "--port", str(port), *arguments),
            ready=GATEWAY_LINE,
            **settings,
        )
        await gateway.wait_ready(40)
        base = f"http://127.0.0.1:{port}"

        async def ready() -> bool:
            async with httpx.AsyncClient(base_url=base, timeout=5, trust_env=False) as http:
                return (await http.get("/readyz")).status_code == 200

        await wait_until(ready, what="the gateway's /readyz to say 200", report=self.report)
        return gateway, base

    def supervise(self, factory: Callable[[], WorkerProcess]) -> Supervisor:
        """Run the process ``factory`` makes under a :class:`Supervisor` (started)."""
        supervisor = Supervisor(factory)
        self.supervisors.append(supervisor)
        supervisor.start()
        return supervisor

    def report(self) -> str:
        """Every process's state and log tail (the latest process of each name), for a
        failure message."""
        latest = {process.name: process for process in self.processes}
        return "\n".join(process.describe() for process in latest.values())

    async def close(self, grace: float = 10.0) -> None:
        """Stop supervisors, SIGTERM every live process, SIGKILL what is left after
        ``grace`` seconds, and reap them all."""
        for supervisor in self.supervisors:
            await supervisor.stop()
        for process in self.processes:
            process.terminate()
        with contextlib.suppress(AssertionError):
            await wait_until(
                lambda: not any(p.alive for p in self.processes),
                what="every process to stop on SIGTERM",
                timeout=grace,
                interval=0.05,
            )
        for process in self.processes:
            if process.alive:
                process.kill()
            if process.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.process.wait(timeout=5)


class Supervisor:
    """Restarts a process whenever it exits, like systemd's ``Restart=always``.

    Parameters:
        factory: makes (and starts) the process; called again after each exit.
    """

    def __init__(self, factory: Callable[[], WorkerProcess]) -> None:
        self.factory = factory
        self.current: WorkerProcess | None = None
        self.exits: list[int] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        """Start the process, and restart it from a background task whenever it exits."""
        self.current = self.factory()
        self._task = asyncio.create_task(self._run(), name="supervisor")

    async def _run(self) -> None:
        while True:
            process = self.current
            assert process is not None
            while process.alive:
                await asyncio.sleep(0.02)  # a supervisor's own watch loop, not a test's wait
            if self._stopping:
                return
            code = process.returncode
            assert code is not None
            self.exits.append(code)
            self.current = self.factory()

    @property
    def restarts(self) -> int:
        return len(self.exits)

    async def stop(self) -> None:
        """Stop restarting; the current process keeps running (see :meth:`Workers.close`)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@dataclass
class AnswerLog:
    """Records every ``answer_generated`` event delivered to it, by query.

    Use it as the handler of a bus subscription to ``answer_generated``.
    """

    by_query: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=lambda: defaultdict(list))
    deliveries: int = 0
    payloads: dict[uuid.UUID, dict[str, object]] = field(default_factory=dict)

    async def __call__(self, message: InboundMessage) -> None:
        event = json.loads(message.body)
        if event.get("type") != "answer_generated":
            return
        query = uuid.UUID(event["correlation_id"])
        self.by_query[query].append(uuid.UUID(event["id"]))
        self.payloads[query] = event["payload"]
        self.deliveries += 1

    def answered(self, queries: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        return {query for query in queries if query in self.by_query}

    def missing(self, queries: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        return {query for query in queries if query not in self.by_query}

    async def wait_for(
        self,
        queries: Iterable[uuid.UUID],
        timeout: float,
        report: Callable[[], str] = lambda: "",
    ) -> None:
        """Wait until every query of ``queries`` has an answer; the failure message ends
        with ``report()`` (e.g. :meth:`Workers.report`)."""
        wanted = set(queries)
        await wait_until(
            lambda: not self.missing(wanted),
            what=f"answers to {len(wanted)} queries",
            timeout=timeout,
            interval=0.1,
            report=lambda: f"{len(self.missing(wanted))} unanswered\n{report()}",
        )

    def distinct_answer_ids(self, query: uuid.UUID) -> set[uuid.UUID]:
        return set(self.by_query.get(query, ()))


# -- the broker -----------------------------------------------------------------------


async def queue_depths(amqp_url: str, names: Iterable[str]) -> dict[str, int]:
    """Ready messages in each queue of ``names`` (passive declarations)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        depths = {}
        for name in names:
            queue = await channel.declare_queue(name, passive=True)
            depths[name] = queue.declaration_result.message_count or 0
        return depths
    finally:
        await connection.close()


def broker_address(amqp_url: str) -> tuple[str, int]:
    parts = urlsplit(amqp_url)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def broker_is_local(amqp_url: str) -> bool:
    """Whether ``rabbitmqctl`` controls the broker of ``amqp_url``: a local node whose
    AMQP listener has the URL's port (not, say, a container's mapped port)."""
    host, port = broker_address(amqp_url)
    if host not in {"127.0.0.1", "localhost", "::1"} or shutil.which("rabbitmqctl") is None:
        return False
    result = subprocess.run(
        ["rabbitmqctl", "-q", "status"], capture_output=True, text=True, timeout=60, check=False
    )
    listener = re.compile(rf"port: {port}, protocol: amqp\b")
    return result.returncode == 0 and listener.search(result.stdout) is not None


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


async def rabbitmqctl(*arguments: str, timeout: float = 60.0) -> str:
    """Run ``rabbitmqctl ARGUMENTS``; raise with its output if it fails."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(arguments)} failed: {text}")
    return text


#: The opt-in of every test that restarts a service: ``RAGBUS_TEST_BROKER_RESTART=1``.
#: Restarting a broker drops every connection to it, other developers' included, so
#: only a run that owns the broker sets it (``.ci/run`` does).
BROKER_RESTART_OPT_IN = "RAGBUS_TEST_BROKER_RESTART"

#: Why a ``broker_restart`` test was skipped.
BROKER_RESTART_SKIP = (
    f"restarts the broker: set {BROKER_RESTART_OPT_IN}=1 to run it (only where nobody else "
    "uses the broker)"
)


def broker_restarts_allowed() -> bool:
    """Whether this run may restart the broker (``RAGBUS_TEST_BROKER_RESTART=1``)."""
    return os.environ.get(BROKER_RESTART_OPT_IN) == "1"


def _refuse_without_opt_in() -> None:
    """Every restart of the broker goes through here: not without the opt-in."""
    if not broker_restarts_allowed():
        raise RuntimeError(
            f"refusing to restart the broker without {BROKER_RESTART_OPT_IN}=1 "
            "(mark the test @pytest.mark.broker_restart)"
        )


async def broker_stop_app() -> None:
    """``rabbitmqctl stop_app``: every connection drops, the node stays up."""
    _refuse_without_opt_in()
    await rabbitmqctl("stop_app")


async def broker_start_app(amqp_url: str, timeout: float = 60.0) -> None:
    """``rabbitmqctl start_app``, then wait until the AMQP port accepts connections."""
    await rabbitmqctl("start_app", timeout=timeout)
    host, port = broker_address(amqp_url)
    await wait_until(
        lambda: port_open(host, port),
        what=f"the broker's port {port} to accept connections",
        timeout=timeout,
        interval=0.1,
    )


def ensure_broker_running(amqp_url: str) -> None:
    """Start the broker's app if its AMQP port is closed (a safety net after a test that
    stopped it), and wait for the port; synchronous, for fixture teardown."""
    host, port = broker_address(amqp_url)
    if port_open(host, port):
        return
    subprocess.run(["rabbitmqctl", "start_app"], capture_output=True, timeout=120, check=False)
    deadline = time.monotonic() + 60
    while not port_open(host, port) and time.monotonic() < deadline:
        time.sleep(0.2)  # a teardown's wait for the port, synchronous on purpose
