"""ragbus: DSPy pipelines as independent async stages on a message bus.

The public API: :class:`Pipeline` (declare event types, stages and sinks),
:class:`StageContext` (what a stage factory builds with), :class:`Envelope` (an event),
:func:`dspy_stage` (a DSPy module as a stage), :class:`Client` (publish and wait for
results), and :mod:`ragbus.testing` (run a pipeline inside a test). Heavy parts (DSPy,
the buses) load only when first used, so ``import ragbus`` stays quick.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ragbus.lazy import lazy_names

# DSPy/LiteLLM fetch a model cost map over the network when an LM is built unless told
# to use the local copy; ragbus works offline, so this is set before dspy is imported.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ragbus.client import Client
    from ragbus.dspy_stages import dspy_stage
    from ragbus.events import Envelope
    from ragbus.pipeline import Pipeline, StageContext

#: Public names and the modules they live in (imported on first use).
_LAZY = {
    "Client": "ragbus.client",
    "dspy_stage": "ragbus.dspy_stages",
    "Envelope": "ragbus.events",
    "Pipeline": "ragbus.pipeline",
    "StageContext": "ragbus.pipeline",
}

__all__ = ["Client", "Envelope", "Pipeline", "StageContext", "__version__", "dspy_stage"]

__getattr__ = lazy_names(__name__, _LAZY)
