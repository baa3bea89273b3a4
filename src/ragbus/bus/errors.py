"""Transport errors raised by every bus backend."""

from __future__ import annotations

from ragbus.errors import RagbusError, TransientError


class BusError(RagbusError):
    """The bus could not do what was asked."""


class UnroutableError(BusError):
    """An event reached no queue: no stage consumes its type. Never a silent drop."""


class PublishNotConfirmedError(BusError, TransientError):
    """The broker did not confirm a publish (nack, or the connection dropped first).

    Transient: the event may or may not have arrived, and trying again is safe because
    consumers drop duplicates by event id.
    """
