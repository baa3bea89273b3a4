"""Every metric the Grafana dashboard queries exists, with the labels it groups by, in the
live ``/metrics`` of a real worker and gateway after a question has flowed through them,
as Prometheus scrapes them in the compose deployment; the gateway's ``/v1/status`` hears
the worker process."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from ragbus.status.model import PipelineStatus
from tests.gateway.conftest import QUESTION
from tests.polling import wait_until
from tests.process.workers import Metrics, Workers

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.timeout(120)]

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "ragbus.json"
)
#: A metric a query names, e.g. ``ragbus_handler_seconds_bucket``.
METRIC = re.compile(r"\bragbus_[a-z_]+\b")
#: ``by (stage, le)``: the labels a query groups by.
GROUPING = re.compile(r"\bby \(([^)]*)\)\s*\(([^()]*(?:\([^()]*\))?[^()]*)\)")


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def wanted_labels() -> dict[str, set[str]]:
    """Each metric the dashboard queries, with the labels it groups that metric by."""
    wanted: dict[str, set[str]] = {}
    for expr in queries():
        for name in METRIC.findall(expr):
            wanted.setdefault(name, set())
        for labels, inner in GROUPING.findall(expr):
            for name in METRIC.findall(inner):
                wanted[name] |= {label.strip() for label in labels.split(",") if label.strip()}
    return wanted


def test_the_dashboard_queries_are_read_as_expected() -> None:
    wanted = wanted_labels()
    assert wanted["ragbus_handler_seconds_bucket"] == {"stage", "le"}
    assert wanted["ragbus_failed_total"] == {"stage", "failure_class"}
    assert wanted["ragbus_gateway_chat_sessions"] == set()
    assert len(wanted) >= 12


async def test_every_metric_the_dashboard_queries_is_exported(workers: Workers) -> None:
    worker = await workers.start(name="worker", stream_tokens=True)
    _, base = await workers.start_gateway("--bus", "rabbitmq")
    async with httpx.AsyncClient(base_url=base, timeout=30, trust_env=False) as http:
        asked = await http.post("/v1/ask", json={"question": QUESTION})
        assert asked.status_code == 200, asked.text
        streamed = await http.post("/v1/ask/stream", json={"question": QUESTION + " (2)"})
        assert streamed.status_code == 200, streamed.text
        gateway_metrics = (await http.get("/metrics")).text

        # the gateway's /v1/status hears the worker process's heartbeats
        async def both_counted() -> bool:
            status = PipelineStatus.model_validate((await http.get("/v1/status")).json())
            return status.stage("generate").processed == 2

        await wait_until(both_counted, what="/v1/status to count both questions", timeout=20)
        status = PipelineStatus.model_validate((await http.get("/v1/status")).json())
    assert [w.worker_id for w in status.workers] == ["worker"]
    assert status.bus == "rabbitmq" and status.stage("retrieve").consumers == 1
    exported = Metrics.parse(await worker.metrics_text() + gateway_metrics)
    labels_of: dict[str, set[str]] = {}
    for name, labels in exported.samples:
        labels_of.setdefault(name, set()).update(label for label, _ in labels)
    missing = {name for name in wanted_labels() if name not in labels_of}
    assert not missing, f"the dashboard queries metrics nobody exports: {sorted(missing)}"
    for name, labels in wanted_labels().items():
        assert labels <= labels_of[name], f"{name} has no label {labels - labels_of[name]}"
    assert exported.value("ragbus_processed_total", stage="generate") == 2
