"""The ops endpoints' port: the default when free, a free one when it is taken, and an
explicit port exactly or a clear error."""

from __future__ import annotations

import logging
import socket

import pytest

from ragbus import ops_http
from ragbus.errors import ConfigurationError
from ragbus.ops_http import bind_ops_socket


@pytest.fixture
def default_port(monkeypatch: pytest.MonkeyPatch) -> int:
    """A port that was free a moment ago, made the default ops port."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = int(probe.getsockname()[1])
    monkeypatch.setattr(ops_http, "DEFAULT_OPS_PORT", port)
    return port


def test_no_port_given_takes_the_default_when_it_is_free(default_port: int) -> None:
    with bind_ops_socket("127.0.0.1", None) as bound:
        assert bound.getsockname()[1] == default_port


def test_no_port_given_takes_a_free_one_when_the_default_is_taken(
    default_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        socket.create_server(("127.0.0.1", default_port)),
        caplog.at_level(logging.WARNING, "ragbus.ops_http"),
        bind_ops_socket("127.0.0.1", None) as bound,
    ):
        assert bound.getsockname()[1] not in (default_port, 0)
    assert f"port {default_port} is taken" in caplog.text


def test_a_given_port_that_is_taken_is_a_configuration_error(default_port: int) -> None:
    with (
        socket.create_server(("127.0.0.1", default_port)),
        pytest.raises(ConfigurationError) as caught,
    ):
        bind_ops_socket("127.0.0.1", default_port)
    assert str(caught.value) == (
        f"cannot serve /healthz and /metrics on 127.0.0.1:{default_port}: Address already "
        "in use; choose another --port (0 picks a free one) or stop what uses it"
    )


def test_a_given_port_zero_is_any_free_port() -> None:
    with bind_ops_socket("127.0.0.1", 0) as bound:
        assert bound.getsockname()[1] != 0
