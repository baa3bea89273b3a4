"""The LMs ragbus calls through DSPy: the offline LM (extractive answers, rule-based text
analysis) and configured models.

Importing this package keeps LiteLLM from fetching its model cost map over the network
(``LITELLM_LOCAL_MODEL_COST_MAP=true``, unless already set), so import it before DSPy.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")

from ragbus.lm.factory import build_lm, is_extractive, is_offline
from ragbus.lm.offline import (
    AsyncExtractiveEngine,
    ExtractiveEngine,
    offline_lm,
)
from ragbus.lm.scope import lm_scope, reported_usage

__all__ = [
    "AsyncExtractiveEngine",
    "ExtractiveEngine",
    "build_lm",
    "is_extractive",
    "is_offline",
    "lm_scope",
    "offline_lm",
    "reported_usage",
]
