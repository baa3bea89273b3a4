"""A RabbitMQ cluster of the test session's own, and what the tests do to its nodes.

Two ways to have one, behind one interface (:class:`Cluster`):

- :class:`LocalCluster`: three nodes of the installed ``rabbitmq-server`` on this
  machine, started and stopped by ``scripts/rabbitmq-cluster`` (names, ports and
  folders of this session's own; the machine's own broker is never touched);
- :class:`ContainerCluster`: three ``rabbitmq`` containers on a Docker network
  (testcontainers), where Docker runs.

Either way the tests stop and start a node's RabbitMQ application (``rabbitmqctl
stop_app`` / ``start_app``: its connections drop, the Erlang node stays up) and ask the
cluster where each queue's leader is.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]

#: The script that starts and stops a local cluster.
SCRIPT = ROOT / "scripts" / "rabbitmq-cluster"

#: Nodes of every test cluster.
NODES = 3

#: Seconds a node's application may take to stop or start.
NODE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Node:
    """One node of a test cluster.

    Parameters:
        name: its Erlang node name (``rabbitmqctl -n`` and queue listings use it).
        url: its AMQP URL, reachable from the tests.
    """

    name: str
    url: str


class Cluster(ABC):
    """A running RabbitMQ cluster of :data:`NODES` nodes.

    Parameters:
        nodes: its nodes, in the order they were started.
    """

    #: How long starting it took, in seconds (reported at the end of the session).
    started_in_s: float = 0.0

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = list(nodes)

    def urls(self, first: int = 0) -> str:
        """Every node's URL, comma-separated (``RAGBUS_AMQP_URL``), starting with node
        ``first`` and going round: each client of a test can start on another node."""
        order = self.nodes[first:] + self.nodes[:first]
        return ",".join(node.url for node in order)

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        return next(node for node in self.nodes if node.name == name)

    async def stop_app(self, node: Node) -> None:
        """``rabbitmqctl stop_app`` on ``node``: its connections drop, its queue
        replicas stop, the rest of the cluster elects new leaders."""
        await self.ctl(node, "stop_app")

    async def start_app(self, node: Node) -> None:
        """``rabbitmqctl start_app`` on ``node``, then wait until it runs."""
        await self.ctl(node, "start_app")
        await self.ctl(node, "await_startup")

    async def queue_leaders(self, names: Iterable[str], via: Node | None = None) -> dict[str, str]:
        """The node name of each quorum queue's leader, asked of ``via`` (default: the
        first node whose application runs)."""
        wanted = set(names)
        text = await self.ctl(
            via or self.nodes[0], "list_queues", "name", "leader", "--formatter", "json"
        )
        return {row["name"]: row["leader"] for row in json.loads(text) if row["name"] in wanted}

    async def queue_members(self, names: Iterable[str]) -> dict[str, list[str]]:
        """The node names holding a replica of each quorum queue of ``names``."""
        wanted = set(names)
        text = await self.ctl(
            self.nodes[0], "list_queues", "name", "members", "--formatter", "json"
        )
        return {
            row["name"]: sorted(row["members"]) for row in json.loads(text) if row["name"] in wanted
        }

    def memory_mib(self) -> dict[str, float]:
        """Each node's memory use in MiB, as its Erlang VM reports it."""
        used = {}
        for node in self.nodes:
            try:
                text = self._ctl_sync(node, "eval", "erlang:memory(total).")
                used[node.name] = int(text.strip()) / 2**20
            except (RuntimeError, ValueError, subprocess.TimeoutExpired):
                used[node.name] = float("nan")
        return used

    async def ctl(self, node: Node, *arguments: str) -> str:
        """``rabbitmqctl ARGUMENTS`` against ``node``; raises with its output if it fails."""
        return await asyncio.to_thread(self._ctl_sync, node, *arguments)

    @abstractmethod
    def _ctl_sync(self, node: Node, *arguments: str) -> str:
        """``rabbitmqctl -q ARGUMENTS`` against ``node``, synchronously."""

    @abstractmethod
    def stop(self) -> None:
        """Stop every node and remove what the cluster left."""


# -- on this machine ------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_base_port() -> int:
    """A first AMQP port such that every port the cluster needs is free: the nodes'
    AMQP ports, their distribution ports (+20000) and their CLI tools' (+30000...)."""
    for _ in range(200):
        base = random.randrange(10_000, 35_000)
        needed = [base + i + offset for i in range(NODES) for offset in (0, 20_000)]
        needed += [base + 30_000 + i for i in range(NODES + 10)]
        if all(_port_free(port) for port in needed):
            return base
    raise RuntimeError("no free ports for a local RabbitMQ cluster")


class LocalCluster(Cluster):
    """Nodes of the installed ``rabbitmq-server``, run by ``scripts/rabbitmq-cluster``.

    Parameters:
        directory: the cluster's folder (data, logs, the node list).
        nodes: its nodes.
    """

    def __init__(self, directory: Path, nodes: Sequence[Node]) -> None:
        super().__init__(nodes)
        self.directory = directory

    @classmethod
    def start(cls, name: str) -> LocalCluster:
        """Start a cluster whose nodes are ``<name>1@localhost`` ... on free ports.

        Parameters:
            name: the prefix of its node names (unique to the test session).
        """
        reap_orphans()
        # the nodes run as the rabbitmq user: their folder must not be under a folder
        # only root may enter (pytest's temporary folders are)
        directory = Path(tempfile.mkdtemp(prefix=f"{CLUSTER_DIR_PREFIX}{name}-", dir="/tmp"))
        directory.rmdir()  # the script creates it, and refuses a folder with a cluster
        last: subprocess.CompletedProcess[str] | None = None
        started = time.monotonic()
        for _ in range(3):  # another session may take a port between the check and start
            command = [str(SCRIPT), "start", "--dir", str(directory), "--name", name]
            command += ["--port", str(_free_base_port()), "--nodes", str(NODES)]
            last = subprocess.run(command, capture_output=True, text=True, timeout=300)
            if last.returncode == 0:
                break
            subprocess.run(
                [str(SCRIPT), "stop", "--dir", str(directory)], capture_output=True, timeout=120
            )
        assert last is not None
        if last.returncode != 0:
            raise RuntimeError(f"scripts/rabbitmq-cluster start failed:\n{last.stderr}")
        (directory / OWNER_FILE).write_text(str(os.getpid()))
        urls = last.stdout.strip().splitlines()[-1].split(",")
        listed = (directory / "nodes").read_text().split("\n")
        names = [line.split()[0] for line in listed if line.strip()]
        cluster = cls(directory, [Node(n, u) for n, u in zip(names, urls, strict=True)])
        cluster.started_in_s = time.monotonic() - started
        return cluster

    def _ctl_sync(self, node: Node, *arguments: str) -> str:
        result = subprocess.run(
            ["rabbitmqctl", "-q", "-n", node.name, *arguments],
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl -n {node.name} {' '.join(arguments)} failed: "
                f"{result.stdout}{result.stderr}"
            )
        return result.stdout

    def stop(self) -> None:
        subprocess.run(
            [str(SCRIPT), "stop", "--dir", str(self.directory)],
            capture_output=True,
            text=True,
            timeout=300,
        )


#: The start of the folder name of every test session's local cluster.
CLUSTER_DIR_PREFIX = "ragbus-test-cluster-"

#: The file in a cluster's folder that holds the pid of the test session that owns it.
OWNER_FILE = "owner"


def reap_orphans() -> None:
    """Stop the local clusters of test sessions that died without stopping them (killed
    with SIGKILL, say): their nodes would hold ports and memory for good."""
    for directory in Path("/tmp").glob(f"{CLUSTER_DIR_PREFIX}*"):
        try:
            owner = int((directory / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # starting, or not one of ours
        try:
            os.kill(owner, 0)
            continue  # its session still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        subprocess.run(
            [str(SCRIPT), "stop", "--dir", str(directory)], capture_output=True, timeout=300
        )


def local_cluster_possible() -> str | None:
    """None when this machine can run a local cluster, else why not."""
    if not SCRIPT.exists():
        return f"{SCRIPT} is missing"
    for program in ("rabbitmq-server", "rabbitmqctl"):
        if subprocess.run(["sh", "-c", f"command -v {program}"], capture_output=True).returncode:
            return f"{program} is not installed"
    if os.geteuid() != 0:
        import pwd

        if pwd.getpwuid(os.geteuid()).pw_name != "rabbitmq":
            return "a local cluster runs as root or as the rabbitmq user"
    return None


# -- in containers --------------------------------------------------------------------

#: The image of the container cluster's nodes.
IMAGE = "rabbitmq:4-management"


class ContainerCluster(Cluster):
    """Three RabbitMQ containers on a Docker network of their own, clustered.

    Parameters:
        containers: the testcontainers containers, by node name.
        network: their network.
        nodes: the nodes.
    """

    def __init__(self, containers: dict[str, Any], network: Any, nodes: Sequence[Node]) -> None:
        super().__init__(nodes)
        self.containers = containers
        self.network = network

    @classmethod
    def start(cls) -> ContainerCluster:
        """Start three containers sharing an Erlang cookie and join them."""
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.network import Network

        started = time.monotonic()
        cookie = os.urandom(16).hex()
        network = Network().create()
        containers: dict[str, Any] = {}
        nodes: list[Node] = []
        try:
            for index in range(1, NODES + 1):
                host = f"rabbit-{index}"
                container = (
                    DockerContainer(IMAGE)
                    .with_network(network)
                    .with_network_aliases(host)
                    .with_kwargs(hostname=host)
                    .with_exposed_ports(5672)
                    .with_env("RABBITMQ_DEFAULT_USER", "ragbus")
                    .with_env("RABBITMQ_DEFAULT_PASS", cookie)
                    .with_env("ERLANG_COOKIE", cookie)
                    # the cookie goes in as a file: RabbitMQ 4 ignores the variable
                    .with_command(
                        [
                            "sh",
                            "-c",
                            'umask 077; printf %s "$ERLANG_COOKIE" > /var/lib/rabbitmq/'
                            ".erlang.cookie; exec docker-entrypoint.sh rabbitmq-server",
                        ]
                    )
                )
                container.start()
                containers[f"rabbit@{host}"] = container
            for name, container in containers.items():
                _wait_for_container(container, "rabbitmq-diagnostics", "-q", "check_running")
                port = container.get_exposed_port(5672)
                ip = container.get_container_host_ip()
                nodes.append(Node(name, f"amqp://ragbus:{cookie}@{ip}:{port}/"))
            cluster = cls(containers, network, nodes)
            for node in nodes[1:]:
                cluster._ctl_sync(node, "stop_app")
                cluster._ctl_sync(node, "join_cluster", nodes[0].name)
                cluster._ctl_sync(node, "start_app")
        except BaseException:
            for container in containers.values():
                container.stop()
            network.remove()
            raise
        cluster.started_in_s = time.monotonic() - started
        return cluster

    def _ctl_sync(self, node: Node, *arguments: str) -> str:
        code, output = self.containers[node.name].exec(["rabbitmqctl", "-q", *arguments])
        text = output.decode(errors="replace")
        if code != 0:
            raise RuntimeError(f"rabbitmqctl on {node.name} {' '.join(arguments)}: {text}")
        return text

    def stop(self) -> None:
        for container in self.containers.values():
            container.stop()
        self.network.remove()


def _wait_for_container(container: Any, *command: str) -> None:
    deadline = time.monotonic() + NODE_TIMEOUT_S
    while time.monotonic() < deadline:
        code, _ = container.exec(list(command))
        if code == 0:
            return
        time.sleep(1)  # a container's start, outside any event loop
    raise RuntimeError(f"{' '.join(command)} never succeeded in {container}")


def docker_runs() -> bool:
    """Whether a Docker engine answers."""
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return False
    return True


async def wait_for_leaders(
    cluster: Cluster, names: Iterable[str], *, off: Node, timeout: float = 60.0
) -> dict[str, str]:
    """Wait until no queue of ``names`` has its leader on ``off`` (it was stopped), and
    return where the leaders are; asked of another node."""
    via = next(node for node in cluster.nodes if node != off)
    found: dict[str, str] = {}

    async def moved() -> bool:
        found.update(await cluster.queue_leaders(names, via=via))
        return all(leader != off.name for leader in found.values())

    await wait_until(moved, what=f"new leaders away from {off.name}", timeout=timeout)
    return found
