"""The hostile-input suites use the process-level fixtures: a RabbitMQ namespace and its
worker processes (whose logs go into the report of a failed test)."""

from tests.process.conftest import namespace, pytest_runtest_makereport, workers

__all__ = ["namespace", "pytest_runtest_makereport", "workers"]
