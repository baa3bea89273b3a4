"""Settings: one pydantic-settings object, environment prefix ``RAGBUS_``.

The kinds (``BusKind``, ``RetrieverKind``) are plain enums; the settings, which bring
pydantic, load when first used, so a command's help can name the kinds cheaply.
"""

from typing import TYPE_CHECKING

from ragbus.config.kinds import BusKind, RetrieverKind
from ragbus.lazy import lazy_names

if TYPE_CHECKING:
    from ragbus.config.settings import Settings, default_dlq_path, load_settings, with_changes

__all__ = [
    "BusKind",
    "RetrieverKind",
    "Settings",
    "default_dlq_path",
    "load_settings",
    "with_changes",
]

__getattr__ = lazy_names(
    __name__,
    dict.fromkeys(
        ("Settings", "default_dlq_path", "load_settings", "with_changes"), "ragbus.config.settings"
    ),
)
