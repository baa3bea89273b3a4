"""Settings: one pydantic-settings object, environment prefix ``RAGBUS_``."""

from ragbus.config.settings import (
    BusKind,
    Settings,
    default_dlq_path,
    load_settings,
    with_changes,
)

__all__ = ["BusKind", "Settings", "default_dlq_path", "load_settings", "with_changes"]
