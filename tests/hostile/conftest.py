"""The hostile-input suites use the process-level fixtures: a RabbitMQ namespace and its
worker processes (whose logs go into the report of a failed test)."""

from tests.process.conftest import namespace, workers

__all__ = ["namespace", "workers"]
