"""The gateway's OpenAPI 3.1 document, built from the same pydantic models the routes
validate with (``GET /openapi.json``)."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import ragbus
from ragbus.events import Envelope
from ragbus.gateway.models import DOCUMENTED_MODELS
from ragbus.payloads.rag import QueryReceived
from ragbus.status.model import PipelineStatus

_REF = "#/components/schemas/{model}"

_SSE_DESCRIPTION = """Server-Sent Events, in this order:

- `stage` ([StageFrame](#/components/schemas/StageFrame)): retrieve started (with the
  question's `id`), retrieve done;
- `sources` ([SourcesFrame](#/components/schemas/SourcesFrame)): the passages found;
- `stage`: generate started;
- `token` ([TokenFrame](#/components/schemas/TokenFrame)), repeated: the answer as it is
  written; the texts concatenate to the answer;
- `stage`: generate done;
- `answer` ([AnswerBody](#/components/schemas/AnswerBody));
- or, instead of the rest, `error` ([ErrorBody](#/components/schemas/ErrorBody)), e.g. a
  timeout;
- `done` ([DoneFrame](#/components/schemas/DoneFrame)), always last.

Comments (`: ping`) keep an idle connection open."""

_WS_DESCRIPTION = """A WebSocket chat. Send [ChatMessage](#/components/schemas/ChatMessage)
objects as text frames; each is answered with JSON frames `{"type": <event>, ...data}`
carrying the same events as `POST /v1/ask/stream` (`stage`, `sources`, `token`, `answer`,
or `error`) and ends with `{"type": "done", "session_id": ...}`. The session's last turns
are sent with each question as its history. An invalid message gets an `error` frame
(`invalid_message`) and the connection stays open. With `RAGBUS_API_TOKEN`, send the
token as `Authorization: Bearer <token>` or, from a browser, as the `access_token` query
parameter."""


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(model=schema)}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json("ErrorBody")}


_PROTECTED_ERRORS = {
    "401": _error("missing or wrong bearer token (only when RAGBUS_API_TOKEN is set)"),
    "403": _error("the page's origin is neither this gateway nor in RAGBUS_CORS_ORIGINS"),
    "421": _error("the Host is not in RAGBUS_GATEWAY_ALLOWED_HOSTS (400: no valid Host)"),
    "429": _error(
        "over the client's rate limit (RAGBUS_GATEWAY_RATE_LIMIT) or a cap on open "
        "requests, or the pipeline's queues are full (queue_full); see the Retry-After "
        "header"
    ),
}
_BODY_ERRORS = {
    "413": _error("the body is larger than RAGBUS_GATEWAY_MAX_BODY_BYTES"),
    "415": _error("the body is not sent as Content-Type: application/json"),
    "422": _error("invalid body: the message names each invalid field"),
}


def _paths() -> dict[str, Any]:
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "/": {
            "get": {
                "summary": "The chat page",
                "operationId": "chatPage",
                "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "security": bearer,
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}},
                    **_PROTECTED_ERRORS,
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "responses": {"200": {"description": "alive", "content": _json("Health")}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the bus is connected",
                "operationId": "readyz",
                "responses": {
                    "200": {"description": "ready", "content": _json("Health")},
                    "503": {"description": "not connected", "content": _json("Health")},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "security": bearer,
                "responses": {
                    "200": {"description": "text format", "content": {"text/plain": {}}},
                    **_PROTECTED_ERRORS,
                },
            }
        },
        "/asyncapi.json": {
            "get": {
                "summary": "The AsyncAPI 3.0 document of the pipeline on RabbitMQ",
                "operationId": "asyncapi",
                "description": "What `ragbus asyncapi` prints: the exchange, routing keys, "
                "queues, and each message with its payload schema and an example.",
                "security": bearer,
                "responses": {
                    "200": {"description": "AsyncAPI 3.0", "content": {"application/json": {}}},
                    **_PROTECTED_ERRORS,
                },
            }
        },
        "/v1/status": {
            "get": {
                "summary": "The pipeline's status, as `ragbus status --json` prints it",
                "operationId": "pipelineStatus",
                "description": "Per stage: state, queue depth, consumers, in flight, "
                "processed per second, failures by class, breaker, concurrency limit and "
                "dead letters by reason, from the workers' heartbeats (the first request "
                "listens for one heartbeat interval). See docs/operations.md.",
                "security": bearer,
                "responses": {
                    "200": {"description": "the status", "content": _json("PipelineStatus")},
                    **_PROTECTED_ERRORS,
                    "503": _error("the bus cannot be asked"),
                },
            }
        },
        "/v1/ask": {
            "post": {
                "summary": "Ask a question and wait for the answer",
                "operationId": "ask",
                "security": bearer,
                "requestBody": {"required": True, "content": _json("AskRequest")},
                "responses": {
                    "200": {"description": "the answer", "content": _json("AnswerBody")},
                    **_PROTECTED_ERRORS,
                    **_BODY_ERRORS,
                    "503": _error("the bus refused the question"),
                    "504": _error("no answer within the timeout"),
                },
            }
        },
        "/v1/ask/stream": {
            "post": {
                "summary": "Ask a question and stream the stages, sources and answer tokens",
                "operationId": "askStream",
                "security": bearer,
                "requestBody": {"required": True, "content": _json("AskRequest")},
                "responses": {
                    "200": {
                        "description": _SSE_DESCRIPTION,
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_PROTECTED_ERRORS,
                    **_BODY_ERRORS,
                },
            }
        },
        "/v1/ws": {
            "get": {
                "summary": "WebSocket chat with sessions",
                "operationId": "chat",
                "description": _WS_DESCRIPTION,
                "security": bearer,
                "responses": {
                    "101": {"description": "switching to the WebSocket protocol"},
                    "403": _error(
                        "missing or wrong token (no body), or another origin (JSON body)"
                    ),
                    "421": _error("the Host is not in RAGBUS_GATEWAY_ALLOWED_HOSTS"),
                    "429": _error(
                        "over the client's rate limit or RAGBUS_GATEWAY_MAX_WEBSOCKETS; see "
                        "Retry-After"
                    ),
                },
            }
        },
        "/v1/events": {
            "post": {
                "summary": "Publish an event from another service",
                "operationId": "publishEvent",
                "description": "An envelope (full, or minimal: `type` + `payload`) of the "
                "pipeline's entry type (`query_received`), or a bare payload of it; the "
                "gateway sets `id`, `correlation_id`, `attempt`, `replays` and `created_at` "
                "and clamps `deadline`. See docs/events.md and docs/security.md.",
                "security": bearer,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": _REF.format(model="Envelope")},
                                    {"$ref": _REF.format(model="QueryReceived")},
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "202": {"description": "published", "content": _json("Accepted")},
                    **_PROTECTED_ERRORS,
                    **_BODY_ERRORS,
                    "403": _error(
                        "an event type this gateway does not accept "
                        "(RAGBUS_GATEWAY_EVENT_TYPES), or another origin"
                    ),
                    "503": _error("the bus did not take the event"),
                },
            }
        },
    }


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every gateway route."""
    models: list[type[BaseModel]] = [*DOCUMENTED_MODELS, Envelope, QueryReceived, PipelineStatus]
    _, top = models_json_schema([(model, "validation") for model in models], ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ragbus gateway",
            "version": ragbus.__version__,
            "description": "Ask questions of a ragbus pipeline over HTTP, Server-Sent Events "
            "and WebSocket, and publish events from other services.",
        },
        "paths": _paths(),
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi(request: Request) -> Response:
    """This document, as JSON."""
    return JSONResponse(openapi_document())
