"""Transport errors raised by every bus backend."""

from __future__ import annotations

from ragbus.errors import ConfigurationError, RagbusError, TransientError


class BusError(RagbusError):
    """The bus could not do what was asked."""


class UnroutableError(BusError):
    """An event reached no queue: no stage consumes its type. Never a silent drop."""


class PublishNotConfirmedError(BusError, TransientError):
    """The broker did not confirm a publish (nack, or the connection dropped first).

    Transient: the event may or may not have arrived, and trying again is safe because
    consumers drop duplicates by event id.
    """


class BrokerUnavailableError(BusError):
    """The broker could not be reached within the time allowed to connect.

    The message names the broker's URL with its password masked, what went wrong, and
    what to do; the command line exits with ``ExitCode.UNAVAILABLE``.
    """


class BrokerRefusedError(BusError, ConfigurationError):
    """The broker answered but refused the connection (wrong user, password or vhost):
    trying again cannot help, so it is a configuration error, raised at once."""


class UnknownStageError(BusError, ValueError):
    """A dead letter names a stage that is not one of the pipeline's: storing it would
    create a queue (or a record) nobody serves."""
