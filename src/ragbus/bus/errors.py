"""Transport errors raised by every bus backend."""

from __future__ import annotations

from ragbus.errors import RagbusError


class BusError(RagbusError):
    """The bus could not do what was asked."""


class UnroutableError(BusError):
    """An event reached no queue: no stage consumes its type. Never a silent drop."""


class PublishNotConfirmedError(BusError):
    """The broker did not confirm a publish (nack, or the connection dropped first)."""
