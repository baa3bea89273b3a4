"""Settings: one pydantic-settings object, environment prefix ``RAGBUS_``."""

from ragbus.config.settings import (
    BusKind,
    RetrieverKind,
    Settings,
    default_dlq_path,
    load_settings,
    with_changes,
)

__all__ = [
    "BusKind",
    "RetrieverKind",
    "Settings",
    "default_dlq_path",
    "load_settings",
    "with_changes",
]
