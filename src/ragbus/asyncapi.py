"""The AsyncAPI 3.0 document of a pipeline on RabbitMQ: what other teams build against.

It describes what is on the wire, from the pipeline value and the bus's naming rules:

- the server (the broker, AMQP 0.9.1);
- one channel per event type: its routing key on the topic exchange, with its message;
- one channel per stage queue (``<prefix>.<stage>``) and per sink, with the messages
  bound to it;
- operations: services publish the entry events, each stage receives from its queue
  and sends what it produces (and the transient events it streams), consumers of
  results receive from the sinks;
- each message: the envelope with that type's payload schema (the JSON Schema
  ``ragbus schema`` prints, hoisted into ``components.schemas``) and an example.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

import ragbus
from ragbus.events import Envelope, EventSpec
from ragbus.pipeline import Pipeline

ASYNCAPI_VERSION: Final = "3.0.0"
#: The AMQP bindings version the document uses.
AMQP_BINDING: Final = "0.3.0"
_SCHEMA_REF: Final = "#/components/schemas/{model}"
#: Fixed time and namespace of the examples, so one pipeline gives one document.
_EXAMPLE_TIME: Final = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_EXAMPLE_NAMESPACE: Final = uuid.UUID("5f0c6a3e-6c1b-4f0e-9d8a-0b7c1e2d3f40")


def example_from_schema(schema: Mapping[str, Any], definitions: Mapping[str, Any]) -> Any:
    """A small value that ``schema`` accepts: required properties only, the first enum
    or const, minimal lengths and bounds, ``$ref`` followed into ``definitions``.

    Parameters:
        schema: a JSON Schema as pydantic writes it.
        definitions: the schemas ``$ref`` points to, by name.
    """
    if "$ref" in schema:
        return example_from_schema(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return example_from_schema(options[0], definitions)
    kind = schema.get("type", "object")
    if kind == "string":
        if schema.get("format") == "date-time":
            return _EXAMPLE_TIME.isoformat()
        if schema.get("format") == "uuid":
            return str(_EXAMPLE_NAMESPACE)
        return "example"[: schema.get("maxLength", 7)].ljust(schema.get("minLength", 0), "x")
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return int(low) + (1 if "exclusiveMinimum" in schema else 0) if kind == "integer" else low
    if kind == "boolean":
        return False
    if kind == "array":
        count = schema.get("minItems", 0)
        return [example_from_schema(schema.get("items", {}), definitions)] * count
    properties = schema.get("properties", {})
    return {
        name: example_from_schema(properties[name], definitions)
        for name in schema.get("required", [])
    }


def example_payload(spec: EventSpec, definitions: Mapping[str, Any]) -> dict[str, Any] | None:
    """The event type's first registered example, else one built from its schema (None
    when the model refuses what its schema suggests)."""
    if spec.examples:
        return dict(spec.examples[0])
    candidate = example_from_schema(spec.model.model_json_schema(), definitions)
    try:
        spec.model.model_validate(candidate)
    except ValidationError:
        return None
    return dict(candidate)


def example_envelope(spec: EventSpec, payload: Mapping[str, Any]) -> dict[str, Any]:
    """An envelope of ``spec``'s type carrying ``payload``, with fixed ids and times."""
    first = uuid.uuid5(_EXAMPLE_NAMESPACE, spec.name)
    envelope = Envelope(
        id=first,
        type=spec.name,
        version=spec.version,
        correlation_id=first,
        created_at=_EXAMPLE_TIME,
        payload=dict(payload),
    )
    return envelope.model_dump(mode="json", exclude_none=True)


def _server(amqp_url: str) -> dict[str, Any]:
    # the first node of a cluster list, never its credentials
    node = urlsplit(amqp_url.split(",")[0].strip())
    vhost = node.path[1:] if len(node.path) > 1 else "/"
    return {
        "host": f"{node.hostname or 'localhost'}:{node.port or 5672}",
        "protocol": "amqp",
        "protocolVersion": "0.9.1",
        "description": f"The RabbitMQ broker (virtual host {vhost!r}); in production one "
        "node of a cluster: clients take the list of nodes and fail over.",
    }


def _message(spec: EventSpec, definitions: Mapping[str, Any]) -> dict[str, Any]:
    payload_ref = {"$ref": _SCHEMA_REF.format(model=spec.model.__name__)}
    message: dict[str, Any] = {
        "name": spec.name,
        "title": spec.name,
        "summary": (spec.description or spec.model.__doc__ or spec.name).strip().split("\n")[0],
        "contentType": "application/json",
        "correlationId": {"location": "$message.payload#/correlation_id"},
        "payload": {
            "allOf": [
                {"$ref": _SCHEMA_REF.format(model="Envelope")},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": spec.name},
                        "version": {"const": spec.version},
                        "payload": payload_ref,
                    },
                },
            ]
        },
        "bindings": {"amqp": {"messageType": spec.name, "bindingVersion": AMQP_BINDING}},
    }
    if spec.transient:
        message["description"] = (
            "Transient: published non-persistent and best effort to whoever listens now; "
            "never retried or dead-lettered."
        )
    example = example_payload(spec, definitions)
    if example is not None:
        message["examples"] = [{"name": "example", "payload": example_envelope(spec, example)}]
    return message


def _queue_channel(address: str, types: list[str], description: str) -> dict[str, Any]:
    return {
        "address": address,
        "description": description,
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in types},
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": address,
                    "durable": True,
                    "exclusive": False,
                    "autoDelete": False,
                },
                "bindingVersion": AMQP_BINDING,
            }
        },
    }


def _operation(
    action: str, channel: str, types: list[str], summary: str, *, persistent: bool = True
) -> dict[str, Any]:
    binding: dict[str, Any] = {"bindingVersion": AMQP_BINDING}
    if action == "send":
        binding.update(deliveryMode=2 if persistent else 1, mandatory=persistent)
    else:
        binding["ack"] = True
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in types],
        "bindings": {"amqp": binding},
    }


def asyncapi_document(
    pipeline: Pipeline,
    *,
    exchange: str = "ragbus.events",
    queue_prefix: str = "ragbus",
    amqp_url: str = "amqp://localhost:5672/",
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``pipeline`` on RabbitMQ.

    Parameters:
        pipeline: the pipeline.
        exchange: the topic exchange (``RAGBUS_EXCHANGE``, default ``ragbus.events``).
        queue_prefix: the prefix of queue names (``RAGBUS_QUEUE_PREFIX``, default
            ``ragbus``).
        amqp_url: the broker (``RAGBUS_AMQP_URL``; only its first host and port are
            shown, never credentials; default ``amqp://localhost:5672/``).
    """
    specs = {spec.name: spec for spec in pipeline.events}
    models: list[type[BaseModel]] = [Envelope, *(spec.model for spec in specs.values())]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=_SCHEMA_REF)
    definitions: dict[str, Any] = top.get("$defs", {})
    exchange_binding = {
        "name": exchange,
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "/",
    }
    channels: dict[str, Any] = {
        name: {
            "address": name,
            "description": f"Routing key {name!r} on the topic exchange {exchange!r}.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": exchange_binding,
                    "bindingVersion": AMQP_BINDING,
                }
            },
        }
        for name in specs
    }
    operations: dict[str, Any] = {}
    for name in pipeline.entry_events:
        operations[f"publish_{name}"] = _operation(
            "send", name, [name], f"A service starts the pipeline with {name}."
        )
    # (owner, queue, event types, what the queue is, who receives from it)
    queues: list[tuple[str, str, list[str], str, str]] = []
    for stage in pipeline.stages.values():
        queue = f"{queue_prefix}.{stage.name}"
        queues.append(
            (
                stage.name,
                queue,
                list(stage.consumes),
                f"The quorum queue of stage {stage.name!r}, bound to "
                f"{', '.join(stage.consumes)}; dead letters in {queue}.dlq.",
                f"Stage {stage.name} takes its events.",
            )
        )
        for produced in stage.produces:
            operations[f"{stage.name}_send_{produced}"] = _operation(
                "send", produced, [produced], f"Stage {stage.name} publishes {produced}."
            )
        if stage.streams:
            operations[f"{stage.name}_stream_{stage.streams}"] = _operation(
                "send",
                stage.streams,
                [stage.streams],
                f"Stage {stage.name} streams {stage.streams} while it works.",
                persistent=False,
            )
    queues += [
        (
            sink.name,
            f"{queue_prefix}.{sink.name}",
            list(sink.event_types),
            f"The sink {sink.name!r}: the latest {sink.max_length} results, each kept "
            f"{sink.ttl_s:g} s, for consumers that come later.",
            f"A consumer reads the {sink.name}.",
        )
        for sink in pipeline.sinks.values()
    ]
    for owner, queue, types, description, summary in queues:
        channels[queue] = _queue_channel(queue, types, description)
        operations[f"{owner}_receive"] = _operation("receive", queue, types, summary)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": f"ragbus pipeline {pipeline.name}",
            "version": ragbus.__version__,
            "description": (pipeline.description + "\n\n" if pipeline.description else "")
            + "Every message is one JSON envelope (docs/events.md); its type is the routing "
            "key. `ragbus schema` prints the same schemas.",
        },
        "defaultContentType": "application/json",
        "servers": {"rabbitmq": _server(amqp_url)},
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {name: _message(spec, definitions) for name, spec in specs.items()},
            "schemas": definitions,
        },
    }
