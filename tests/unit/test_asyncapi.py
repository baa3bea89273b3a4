"""The AsyncAPI document: valid against the official AsyncAPI 3.0.0 JSON Schema
(vendored in tests/data/asyncapi, see its README), every reference resolves, every
example is an event the pipeline accepts."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ragbus.apps import load_app
from ragbus.asyncapi import asyncapi_document
from ragbus.pipeline import Pipeline

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "data" / "asyncapi" / "asyncapi-3.0.0.schema.json").read_text()
)
APPS = ["rag", "analyzer"]


def errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(document)]


def references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            yield value["$ref"]
        for item in value.values():
            yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


def resolve(document: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = document
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


@pytest.mark.parametrize("app", APPS)
def test_the_document_is_valid_asyncapi_3(app: str) -> None:
    document = asyncapi_document(load_app(app))
    assert document["asyncapi"] == "3.0.0"
    assert errors(document) == []


def test_the_validation_catches_a_broken_document() -> None:
    document = asyncapi_document(load_app("rag"))
    broken = copy.deepcopy(document)
    broken["operations"]["retrieve_receive"]["action"] = "subscribe"  # AsyncAPI 2 wording
    del broken["info"]["title"]
    assert len(errors(broken)) >= 2


@pytest.mark.parametrize("app", APPS)
def test_every_reference_resolves(app: str) -> None:
    document = asyncapi_document(load_app(app))
    pointers = set(references(document))
    assert pointers
    for pointer in pointers:
        resolve(document, pointer)


@pytest.mark.parametrize("app", APPS)
def test_each_message_has_its_schema_and_an_example_the_pipeline_accepts(app: str) -> None:
    pipeline: Pipeline = load_app(app)
    document = asyncapi_document(pipeline)
    messages = document["components"]["messages"]
    assert set(messages) == set(pipeline.events.names)
    for name, message in messages.items():
        [example] = message["examples"]
        envelope = pipeline.events.validate(example["payload"])
        assert envelope.type == name
        schema = {**message["payload"], "components": document["components"]}
        jsonschema.Draft202012Validator(schema).validate(example["payload"])
        wrong = {**example["payload"], "payload": {"unexpected": True}}
        assert list(jsonschema.Draft202012Validator(schema).iter_errors(wrong)), name


def test_the_exchange_routing_keys_and_queues_follow_the_settings() -> None:
    document = asyncapi_document(
        load_app("rag"),
        exchange="shop.events",
        queue_prefix="shop",
        amqp_url="amqp://user:secret@broker-1:5673/prod,amqp://user:secret@broker-2/prod",
    )
    assert document["servers"]["rabbitmq"]["host"] == "broker-1:5673"
    assert "secret" not in json.dumps(document)
    routing = document["channels"]["query_received"]["bindings"]["amqp"]
    assert routing["is"] == "routingKey" and routing["exchange"]["name"] == "shop.events"
    queue = document["channels"]["shop.retrieve"]["bindings"]["amqp"]
    assert queue["is"] == "queue" and queue["queue"]["name"] == "shop.retrieve"
    assert set(document["channels"]["shop.answers"]["messages"]) == {"answer_generated"}
    stream = document["operations"]["generate_stream_answer_token"]["bindings"]["amqp"]
    assert stream["deliveryMode"] == 1, "tokens are transient"
