"""The JSON Schemas ragbus publishes, and the docs' JSON checked against them.

An event in the docs must be what a producer in another language would send after
reading ``ragbus schema``: it must validate against the envelope's schema and its
type's payload schema (draft 2020-12, formats checked), and ragbus must decode it.
Any other JSON must be a body of the gateway's OpenAPI document (``/openapi.json``):
one of its schemas must name every key of it and accept it.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from ragbus.events import InvalidEvent
from ragbus.gateway.openapi import openapi_document
from ragbus.pipelines.rag import pipeline as rag

#: The ``ragbus`` command of the environment running the tests.
RAGBUS = str(Path(sys.executable).parent / "ragbus")


@functools.cache
def published_schemas() -> dict[str, Any]:
    """What ``ragbus schema`` prints (run once, as a subprocess)."""
    result = subprocess.run(
        [RAGBUS, "schema"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"`ragbus schema` failed: {result.stderr}"
    schemas: dict[str, Any] = json.loads(result.stdout)
    return schemas


def _check(schema: dict[str, Any], instance: Any, what: str) -> None:
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    errors = sorted(validator.iter_errors(instance), key=lambda error: list(error.path))
    if errors:
        described = "; ".join(_describe(error) for error in errors)
        raise AssertionError(f"{what} breaks its schema (`ragbus schema`): {described}")


def _describe(error: ValidationError) -> str:
    where = ".".join(str(part) for part in error.absolute_path) or "(top)"
    return f"{where}: {error.message}"


def validate_event(event: Any) -> None:
    """``event`` is a valid envelope of its ``type`` by the published schemas, and ragbus
    decodes it; ``AssertionError`` says what is wrong."""
    assert isinstance(event, dict), f"an event is a JSON object, not {type(event).__name__}"
    schemas = published_schemas()
    event_type = event.get("type")
    assert event_type in schemas["payloads"], (
        f"unknown event type {event_type!r}; `ragbus schema` knows {sorted(schemas['payloads'])}"
    )
    _check(schemas["envelope"], event, f"the {event_type} envelope")
    _check(schemas["payloads"][event_type], event["payload"], f"the {event_type} payload")
    try:
        rag.events.decode(json.dumps(event))
    except InvalidEvent as exc:
        raise AssertionError(f"ragbus refuses the {event_type} event: {exc}") from None


def gateway_bodies(value: Any) -> list[str]:
    """The gateway's OpenAPI schemas that ``value`` is an instance of (those that name
    every key of it, require none it lacks, and accept it)."""
    if not isinstance(value, dict):
        return []
    components = openapi_document()["components"]
    found = []
    for name, schema in components["schemas"].items():
        properties = set(schema.get("properties", {}))
        if not set(value) <= properties or not set(schema.get("required", ())) <= set(value):
            continue
        document = {"$ref": f"#/components/schemas/{name}", "components": components}
        if Draft202012Validator(document, format_checker=FormatChecker()).is_valid(value):
            found.append(name)
    return found
