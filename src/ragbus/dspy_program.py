"""Calling a DSPy module the way a stage does: what identifies it (its fingerprint), how
a saved program is loaded into it, and how one output field streams while it runs."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import dspy
from dspy.streaming import StreamListener, StreamResponse
from dspy.streaming.streaming_listener import find_predictor_for_stream_listeners

from ragbus.errors import ConfigurationError
from ragbus.streaming import TokenEmitter


def describe_module(module: dspy.Module) -> list[dict[str, Any]]:
    """What determines a module's prompts: each predictor's name, signature (fields,
    types, instructions) and state (demos, ...)."""
    described = []
    for name, predictor in module.named_predictors():
        signature = predictor.signature
        described.append(
            {
                "name": name,
                "signature": signature.signature,
                "instructions": signature.instructions,
                "types": {key: str(field.annotation) for key, field in signature.fields.items()},
                "state": predictor.dump_state(),
            }
        )
    return described


def lm_identity(lm: dspy.BaseLM) -> dict[str, Any]:
    """The LM's model and settings that shape its answers (keys and endpoints left out)."""
    settings = {k: v for k, v in lm.kwargs.items() if not str(k).startswith("api_")}
    return {"model": lm.model, "settings": settings}


def module_fingerprint(
    module: dspy.Module, lm: dspy.BaseLM, *, label: str = "", **extra: Any
) -> str:
    """A short, stable digest of everything but the input that determines the module's
    output: its class, its predictors' signatures and state, the LM's model and
    settings, and ``extra`` (e.g. how payload fields map to the signature).

    Parameters:
        module: the DSPy module.
        lm: the LM it is called with.
        label: a readable part put between the model and the digest, e.g. a prompt
            version (default none).
        **extra: more that shapes the output (JSON-able).
    """
    described = {
        "module": type(module).__qualname__,
        "predictors": describe_module(module),
        "lm": lm_identity(lm),
        "extra": extra,
    }
    encoded = json.dumps(described, sort_keys=True, default=str).encode()
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    return f"{lm.model}:{label}:{digest}" if label else f"{lm.model}:{digest}"


def load_program(module: dspy.Module, path: Path) -> dspy.Module:
    """``module`` with the state of the program saved at ``path`` (``module.save``, or an
    optimizer's output) loaded into it; :class:`~ragbus.errors.ConfigurationError` when
    the file is missing or does not fit the module.

    Parameters:
        module: a module of the program's shape (its predictors' names must match).
        path: the saved program (JSON).
    """
    if not path.is_file():
        raise ConfigurationError(f"program file does not exist: {path}")
    try:
        module.load(str(path))
    except Exception as exc:  # DSPy raises many kinds here: say which file and why
        raise ConfigurationError(
            f"cannot load the program {path}: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def can_stream(module: dspy.Module, field: str) -> bool:
    """Whether a ``StreamListener`` on ``field`` finds exactly one predictor in ``module``."""
    try:
        find_predictor_for_stream_listeners(module, [StreamListener(signature_field_name=field)])
    except (ValueError, TypeError):  # no such field (DSPy fails with a TypeError), or two
        return False
    return True


async def call_streaming(
    module: dspy.Module, inputs: dict[str, Any], field: str, tokens: TokenEmitter
) -> dspy.Prediction:
    """Call ``module`` with ``inputs`` under ``dspy.streamify``, sending each piece of the
    ``field`` output to ``tokens``; returns the final prediction. A fresh listener is
    built for every call: one shared by concurrent calls streams nothing.

    Parameters:
        module: the DSPy module (call it inside the stage's LM scope).
        inputs: its keyword arguments.
        field: the output field to stream.
        tokens: where the pieces go.
    """
    program = dspy.streamify(
        module,
        stream_listeners=[StreamListener(signature_field_name=field)],
        is_async_program=True,
    )
    prediction: dspy.Prediction | None = None
    async with contextlib.aclosing(program(**inputs)) as stream, tokens:
        async for value in stream:
            if isinstance(value, StreamResponse):
                await tokens.add(str(value.chunk))
            elif isinstance(value, dspy.Prediction):
                prediction = value
    if prediction is None:
        raise RuntimeError("the streamed DSPy program ended without a prediction")
    return prediction
