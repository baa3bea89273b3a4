"""Worker processes for process-level tests, and what the tests count with.

- :class:`Workers` starts ``ragbus worker`` processes (or any other entry point) in one
  RabbitMQ test namespace, waits until each is ready (the line that names its ops port,
  then ``/healthz``), signals, kills and waits for them, keeps each one's stderr in a
  file for failure messages, and stops every child it started in :meth:`Workers.close`.
- :class:`Supervisor` restarts a worker whenever it dies, as systemd or compose would.
- :class:`AnswerLog` records every ``answer_generated`` event a test bus receives.
- :func:`broker_stop_app` / :func:`broker_start_app` stop and start the local broker
  with ``rabbitmqctl`` (the broker restart test).
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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import httpx
from prometheus_client.parser import text_string_to_metric_families

from ragbus.bus.base import InboundMessage
from tests.amqp import Namespace

#: The line a ``ragbus worker`` logs once it consumes and serves its ops endpoints.
OPS_LINE = re.compile(r"/healthz and /metrics on http://(?P<host>\S+?):(?P<port>\d+)")

#: The line :mod:`tests.process.poison_worker` logs once it consumes.
POISON_READY = re.compile(r"poison worker \S+ ready")


class WorkerFailed(AssertionError):
    """A worker did not become ready, or did not stop as it should have."""


async def poll(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> None:
    """Wait until ``condition()`` is true, checking every ``interval`` seconds; raise
    :class:`AssertionError` with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"after {timeout:g}s: {text}")
        await asyncio.sleep(interval)


def worker_env(namespace: Namespace, **settings: object) -> dict[str, str]:
    """The environment of a worker in ``namespace``: this process's environment without
    any ``RAGBUS_`` variable, the namespace's bus settings, and ``settings`` as
    ``RAGBUS_<NAME>`` (e.g. ``lm_latency_ms=200``)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAGBUS_")}
    env.update(
        RAGBUS_BUS="rabbitmq",
        RAGBUS_AMQP_URL=namespace.url,
        RAGBUS_EXCHANGE=namespace.exchange,
        RAGBUS_QUEUE_PREFIX=namespace.prefix,
        PYTHONUNBUFFERED="1",
        LITELLM_LOCAL_MODEL_COST_MAP="true",
    )
    for name, value in settings.items():
        env[f"RAGBUS_{name.upper()}"] = str(value)
    return env


def ragbus_command(*arguments: str) -> list[str]:
    """``python -m ragbus.cli ARGUMENTS`` with this interpreter."""
    return [sys.executable, "-m", "ragbus.cli", *arguments]


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the test process dies, so that no
    worker outlives a test run that was killed (Linux; elsewhere teardown must do)."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass(frozen=True)
class Completed:
    """A finished command: exit code, stdout and stderr."""

    code: int
    stdout: str
    stderr: str


async def run_ragbus(
    namespace: Namespace,
    *arguments: str,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> Completed:
    """Run ``ragbus ARGUMENTS`` in ``namespace`` (see :func:`worker_env`) to its end."""
    process = await asyncio.create_subprocess_exec(
        *ragbus_command(*arguments),
        env=worker_env(namespace),
        cwd=cwd,
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
            f"ragbus {' '.join(arguments)} still running after {timeout}s"
        ) from None
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


@dataclass
class WorkerProcess:
    """One child process and its stderr log (see :meth:`Workers.spawn`)."""

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
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C of the test run does not reach it
                preexec_fn=_die_with_parent,
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
        offset = self.log.rfind("--- start")
        while True:
            match = self.ready.search(self.log, max(offset, 0))
            if match is not None:
                break
            if not self.alive:
                raise WorkerFailed(f"{self.name} exited before it was ready\n{self.describe()}")
            if time.monotonic() > deadline:
                raise WorkerFailed(f"{self.name} not ready after {timeout:g}s\n{self.describe()}")
            await asyncio.sleep(0.05)
        if "port" not in match.groupdict():
            return
        self.port = int(match["port"])
        remaining = max(deadline - time.monotonic(), 1.0)
        await poll(
            self._is_healthy,
            timeout=remaining,
            message=lambda: f"{self.name}: /healthz never answered 200\n{self.describe()}",
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
        await poll(
            lambda: not self.alive,
            timeout=timeout,
            message=lambda: f"{self.name} still running\n{self.describe()}",
        )
        code = self.returncode
        assert code is not None
        return code

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
    """The worker processes of one test, all in one namespace.

    Parameters:
        namespace: the RabbitMQ namespace (exchange and queue prefix) they serve.
        directory: where their logs go; also their working directory (no ``.env``).
    """

    def __init__(self, namespace: Namespace, directory: Path) -> None:
        self.namespace = namespace
        self.directory = directory
        self.processes: list[WorkerProcess] = []
        self.supervisors: list[Supervisor] = []
        self._names: dict[str, int] = defaultdict(int)

    def _name(self, base: str) -> str:
        self._names[base] += 1
        return f"{base}-{self._names[base]}"

    def spawn(
        self,
        stages: str = "all",
        *,
        name: str | None = None,
        argv: list[str] | None = None,
        ready: re.Pattern[str] = OPS_LINE,
        env: Mapping[str, str] | None = None,
        **settings: object,
    ) -> WorkerProcess:
        """Start a process without waiting for it.

        Parameters:
            stages: the ``--stages`` of a ``ragbus worker`` (default all).
            name: its name in logs and as ``RAGBUS_WORKER_ID`` (default ``worker-N``).
            argv: run this command instead of ``ragbus worker --stages STAGES --port 0``.
            ready: the log line that says it is ready (default: the ops port line).
            env: extra environment variables.
            settings: ``RAGBUS_<NAME>`` settings (e.g. ``lm_latency_ms=200``).
        """
        name = name or self._name("worker")
        command = argv or ragbus_command("worker", "--stages", stages, "--port", "0")
        environment = worker_env(self.namespace, worker_id=name, **settings)
        environment.update(env or {})
        process = WorkerProcess(
            name=name,
            argv=command,
            env=environment,
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
        self, *arguments: str, stdin: str | None = None, timeout: float = 60.0
    ) -> Completed:
        """Run a one-shot ``ragbus ARGUMENTS`` (``ask``, ``publish``, ...) in the namespace,
        in the workers' directory, to its end."""
        return await run_ragbus(
            self.namespace, *arguments, stdin=stdin, cwd=self.directory, timeout=timeout
        )

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
        deadline = time.monotonic() + grace
        while any(p.alive for p in self.processes) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
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
                await asyncio.sleep(0.02)
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
        await poll(
            lambda: not self.missing(wanted),
            timeout=timeout,
            interval=0.1,
            message=lambda: (
                f"{len(self.missing(wanted))} of {len(wanted)} queries unanswered\n{report()}"
            ),
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


async def broker_stop_app() -> None:
    """``rabbitmqctl stop_app``: every connection drops, the node stays up."""
    await rabbitmqctl("stop_app")


async def broker_start_app(amqp_url: str, timeout: float = 60.0) -> None:
    """``rabbitmqctl start_app``, then wait until the AMQP port accepts connections."""
    await rabbitmqctl("start_app", timeout=timeout)
    host, port = broker_address(amqp_url)
    await poll(lambda: port_open(host, port), timeout=timeout, interval=0.1, message="port closed")


def ensure_broker_running(amqp_url: str) -> None:
    """Start the broker's app if its AMQP port is closed (a safety net after a test that
    stopped it), and wait for the port; synchronous, for fixture teardown."""
    host, port = broker_address(amqp_url)
    if port_open(host, port):
        return
    subprocess.run(["rabbitmqctl", "start_app"], capture_output=True, timeout=120, check=False)
    deadline = time.monotonic() + 60
    while not port_open(host, port) and time.monotonic() < deadline:
        time.sleep(0.2)
