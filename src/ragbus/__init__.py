"""ragbus: DSPy pipelines as independent async stages on a message bus."""

import os

# DSPy/LiteLLM fetch a model cost map over the network when an LM is built unless told
# to use the local copy; ragbus works offline, so this is set before dspy is imported.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")

__version__ = "0.1.0"
