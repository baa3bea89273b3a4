"""Building the DSPy LM a deployment is configured with."""

from __future__ import annotations

from typing import Any

import dspy

from ragbus.config.settings import OFFLINE_MODEL, Settings
from ragbus.errors import ConfigurationError
from ragbus.lm.offline import AsyncExtractiveEngine, ExtractiveEngine, offline_lm
from ragbus.lm.pool import pooled_lm


def build_lm(settings: Settings) -> dspy.LM:
    """The LM named by ``settings.lm_model``.

    ``offline/extractive`` (the default) gives the offline extractive LM, waiting
    ``settings.lm_latency_ms`` per call. Any other value is a model string for
    ``dspy.LM`` (LiteLLM naming, e.g. ``openai/gpt-4o-mini``), called with
    ``lm_api_base``, ``lm_api_key``, ``lm_temperature``, ``lm_max_tokens`` and
    ``lm_timeout_s`` (the HTTP request's time limit); with ``lm_max_connections`` set,
    through DSPy's own HTTP engine with a pool of that many connections (see
    :func:`ragbus.lm.pool.pooled_lm`), else with DSPy's choice of engine. DSPy's own
    retries and cache are off (``num_retries=0``, ``cache=False``): ragbus retries and
    caches around the whole stage. Raises :class:`~ragbus.errors.ConfigurationError`
    when DSPy rejects the settings.

    Parameters:
        settings: the deployment's settings.
    """
    if settings.lm_model == OFFLINE_MODEL:
        return offline_lm(settings.lm_latency_ms)
    options: dict[str, Any] = {}
    if settings.lm_api_base:
        options["api_base"] = settings.lm_api_base
    if settings.lm_api_key is not None:
        options["api_key"] = settings.lm_api_key.get_secret_value()
    if settings.lm_timeout_s is not None:
        # DSPy hands it to whichever client it calls through: its own HTTP engine
        # (connect, read and write timeouts) or LiteLLM (its request timeout)
        options["timeout"] = settings.lm_timeout_s
    common: dict[str, Any] = {
        "temperature": settings.lm_temperature,
        "max_tokens": settings.lm_max_tokens,
        "num_retries": 0,
        "cache": False,
    }
    if settings.lm_max_connections is not None:
        return pooled_lm(
            settings.lm_model,
            max_connections=settings.lm_max_connections,
            api_base=settings.lm_api_base,
            api_key=options.get("api_key"),
            timeout_s=settings.lm_timeout_s,
            **common,
        )
    try:
        return dspy.LM(settings.lm_model, **common, **options)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"cannot use LM {settings.lm_model!r}: {exc}") from exc


def is_offline(lm: dspy.BaseLM) -> bool:
    """Whether ``lm`` is the offline LM: its answers quote the context and its text
    analyses come from rules, not from a language model."""
    engine = getattr(lm, "engine", None)
    return lm.model == OFFLINE_MODEL and isinstance(
        engine, ExtractiveEngine | AsyncExtractiveEngine
    )


def is_extractive(lm: dspy.BaseLM) -> bool:
    """Whether ``lm`` answers questions extractively (it is the offline LM: its answers
    quote the context)."""
    return is_offline(lm)
