"""What the two RabbitMQ anchors share: the chain's shape, its queues, and its codec.

The chain is ``query_received -> [retrieve] -> documents_retrieved -> [generate] ->
answer_generated -> collector``, on a durable topic exchange keyed by event type, like
ragbus. Its durability is ragbus's: each stage consumes a durable **quorum** queue with
manual acks and ``prefetch = concurrency``, every message is persistent and published
on a channel with publisher confirms (``mandatory``), and a stage acks its input only
after the broker confirmed its output. The collector, like ragbus's client, consumes
an exclusive, auto-deleted classic queue.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from ragbus.events import Envelope, new_event
from ragbus.payloads.rag import QueryReceived, RagEvent
from ragbus.runtime.stage import Handler
from ragbus_bench.load import question

#: Arguments of a stage queue: a quorum queue, as ragbus's stage queues are.
QUORUM_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}

#: Arguments of the collector's exclusive queue (ragbus's client uses the same).
COLLECTOR_ARGUMENTS: dict[str, Any] = {"x-queue-type": "classic"}

#: Names of the two anchors in results.
AIOPIKA_NAME = "anchor: raw aio-pika chain"
FASTSTREAM_NAME = "anchor: FastStream chain"

#: The event type the collector consumes.
ANSWER_TYPE = RagEvent.ANSWER_GENERATED.value


@dataclass(frozen=True)
class ChainStage:
    """One stage of the anchor chain.

    Parameters:
        name: the stage, also the last part of its queue name.
        consumes: the event type routed to its queue.
        handler: the ragbus handler doing its work.
    """

    name: str
    consumes: str
    handler: Handler


def chain_stages(retrieve: Handler, generate: Handler) -> list[ChainStage]:
    """The two working stages of the chain, in order."""
    return [
        ChainStage("retrieve", RagEvent.QUERY_RECEIVED.value, retrieve),
        ChainStage("generate", RagEvent.DOCUMENTS_RETRIEVED.value, generate),
    ]


def encode(event: Envelope) -> bytes:
    """An envelope as JSON bytes (``json.dumps`` of its JSON-mode dump)."""
    return json.dumps(event.model_dump(mode="json")).encode()


def decode(body: bytes | dict[str, Any]) -> Envelope:
    """An envelope from JSON bytes, or from a dict a framework already decoded."""
    return Envelope.model_validate(json.loads(body) if isinstance(body, bytes) else body)


def new_query(number: int) -> Envelope:
    """The ``query_received`` event of the benchmark's ``number``-th question."""
    return new_event(RagEvent.QUERY_RECEIVED, QueryReceived(question=question(number)))


class AnswerWaiters:
    """Futures of the questions in flight, resolved by the collector by correlation id."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def expect(self, query: Envelope) -> asyncio.Future[dict[str, Any]]:
        """A future resolved with the answer (as a dict) to ``query``."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[str(query.id)] = future
        return future

    def deliver(self, answer: bytes | dict[str, Any]) -> None:
        """Resolve the future waiting for ``answer`` (JSON bytes or a decoded dict)."""
        fields = json.loads(answer) if isinstance(answer, bytes) else answer
        future = self._waiting.pop(str(fields.get("correlation_id")), None)
        if future is not None and not future.done():
            future.set_result(fields)

    def forget(self, query: Envelope) -> None:
        """Stop waiting for ``query`` (it failed or timed out)."""
        self._waiting.pop(str(query.id), None)
