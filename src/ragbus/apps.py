"""Finding the pipeline a command serves: ``--app module:attribute`` or a built-in name."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Final

from ragbus.errors import ConfigurationError
from ragbus.pipeline import Pipeline

#: The built-in pipelines, by their short names.
BUILT_IN_APPS: Final = {
    "rag": "ragbus.pipelines.rag:pipeline",
    "analyzer": "ragbus.pipelines.analyzer:pipeline",
}


def load_app(spec: str) -> Pipeline:
    """The pipeline ``spec`` names: a built-in name (``rag``, ``analyzer``) or
    ``module:attribute``, where the attribute is a :class:`~ragbus.pipeline.Pipeline` or
    a function returning one. The working directory is importable, as with other
    app-loading commands (uvicorn, FastStream). Raises
    :class:`~ragbus.errors.ConfigurationError` with one clear line otherwise.

    Parameters:
        spec: the app, e.g. ``rag`` or ``myproject.pipelines:summarizer``.
    """
    target = BUILT_IN_APPS.get(spec.strip(), spec.strip())
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"--app {spec!r}: name a built-in app ({', '.join(BUILT_IN_APPS)}) "
            "or module:attribute, e.g. myapp:pipeline"
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"--app {spec!r}: cannot import {module_name!r}: {exc}") from exc
    except Exception as exc:  # the user's module raised while it was imported: say where
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise ConfigurationError(
            f"--app {spec!r}: importing {module_name!r} failed at {where.filename}:"
            f"{where.lineno}: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        value = getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(
            f"--app {spec!r}: module {module_name!r} has no attribute {attribute!r}"
        ) from None
    if not isinstance(value, Pipeline) and callable(value):
        value = value()
    if not isinstance(value, Pipeline):
        raise ConfigurationError(
            f"--app {spec!r}: {target} is a {type(value).__name__}, not a ragbus.Pipeline"
        )
    return value
