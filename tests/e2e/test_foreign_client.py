"""Another service publishes a question with a different AMQP client (pika), as a
minimal envelope, and reads the answer from the exchange: no ragbus code on its side."""

from __future__ import annotations

import asyncio
import json
import uuid

import pika
import pytest

from ragbus.client import Client
from ragbus.config import Settings
from tests.amqp import Namespace

pytestmark = pytest.mark.rabbitmq


def ask_with_pika(
    url: str, exchange: str, question: str, timeout: float = 30.0
) -> dict[str, object]:
    """What docs/events.md shows: declare an exclusive queue for answers, publish a
    minimal envelope with confirms, wait for the answer to this question."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        answers = channel.queue_declare(queue="", exclusive=True).method.queue
        channel.queue_bind(answers, exchange, routing_key="answer_generated")
        question_id = str(uuid.uuid4())
        body = {"type": "query_received", "payload": {"question": question}}
        channel.basic_publish(
            exchange,
            "query_received",
            json.dumps(body).encode(),
            pika.BasicProperties(
                content_type="application/json", delivery_mode=2, message_id=question_id
            ),
            mandatory=True,
        )
        for _method, _properties, raw in channel.consume(
            answers, auto_ack=True, inactivity_timeout=timeout
        ):
            if raw is None:
                raise TimeoutError("no answer")
            event = json.loads(raw)
            if event["payload"]["question"] == question:
                return dict(event)
        raise AssertionError("unreachable")
    finally:
        connection.close()


async def test_a_minimal_envelope_from_pika_is_answered(amqp_url: str, settings: Settings) -> None:
    namespace = Namespace(amqp_url)
    try:
        bus = namespace.make()
        async with Client(settings, bus=bus, run_pipeline=True):
            answer = await asyncio.to_thread(
                ask_with_pika, amqp_url, namespace.exchange, "What is a minimal envelope?"
            )
    finally:
        await namespace.cleanup()
    assert answer["type"] == "answer_generated"
    payload = answer["payload"]
    assert isinstance(payload, dict) and payload["answer"]
    assert payload["sources"]
