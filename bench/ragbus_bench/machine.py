"""What a benchmark ran on: CPUs, memory, Python, library and broker versions, load."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
from pathlib import Path

import aio_pika
from aiormq.exceptions import AMQPError

#: Libraries whose versions matter to the figures.
LIBRARIES = ("ragbus", "dspy", "pydantic", "aio-pika", "aiormq", "faststream")


def usable_cpus() -> int | None:
    """CPUs this process may run on, as ``nproc`` counts them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    """Total RAM in GiB from ``/proc/meminfo`` (None where unknown)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return None


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, e.g. ``1.52 1.20 0.90``."""
    with contextlib.suppress(OSError):
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    return "unknown"


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`LIBRARIES` (``missing`` for absent ones)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


async def broker_version(url: str) -> str:
    """The broker's product and version as it announces them on connecting, e.g.
    ``RabbitMQ 3.10.8`` (``unreachable`` if it cannot be reached).

    Parameters:
        url: the AMQP URL.
    """
    try:
        connection = await aio_pika.connect(url)
    except (AMQPError, OSError):
        return "unreachable"
    try:
        transport = connection.transport
        properties = transport.connection.server_properties if transport else {}
        product = properties.get("product", "broker")
        version = properties.get("version", "?")
        return f"{_text(product)} {_text(version)}"
    finally:
        await connection.close()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def machine_facts() -> dict[str, str]:
    """CPUs, CPU model, RAM, OS, Python and library versions, as labelled strings."""
    memory = memory_gib()
    facts = {
        "CPUs (nproc)": str(usable_cpus() or "unknown"),
        "CPU model": cpu_model(),
        "RAM": "unknown" if memory is None else f"{memory:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    facts.update(library_versions())
    return facts
