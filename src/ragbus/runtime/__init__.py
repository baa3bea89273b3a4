"""What wraps every handler: consumer loop, guards, retries, metrics.

Names load on first use, so that low modules (settings, the buses) can read the
constants of :mod:`ragbus.runtime.redelivery` without pulling in the whole runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragbus.runtime.classify import BreakerOpenError, FailureClass, classify
    from ragbus.runtime.consumer import StageConsumer
    from ragbus.runtime.metrics import Metrics
    from ragbus.runtime.runner import Runtime
    from ragbus.runtime.stage import Handler, Stage

#: Public names and the modules they live in (imported on first use).
_LAZY = {
    "BreakerOpenError": "ragbus.runtime.classify",
    "FailureClass": "ragbus.runtime.classify",
    "classify": "ragbus.runtime.classify",
    "StageConsumer": "ragbus.runtime.consumer",
    "Metrics": "ragbus.runtime.metrics",
    "Runtime": "ragbus.runtime.runner",
    "Handler": "ragbus.runtime.stage",
    "Stage": "ragbus.runtime.stage",
}

__all__ = [
    "BreakerOpenError",
    "FailureClass",
    "Handler",
    "Metrics",
    "Runtime",
    "Stage",
    "StageConsumer",
    "classify",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ragbus.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
