"""Hostile input on the bus: a foreign producer (pika, no ragbus code) publishes every
kind of bad message to the exchange, between good questions, at real ``ragbus worker``
processes. Counted: every bad message dead-lettered exactly once with the right stage
and reason (read back with ``ragbus dlq list`` from a fresh process), no worker exits,
every good question answered."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pika
import pytest

from ragbus.pipelines.rag import STAGE_NAMES
from tests.amqp import Namespace
from tests.hostile.inputs import BadInput, bad_inputs
from tests.polling import wait_until
from tests.process.workers import Workers, queue_depths

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

#: Good questions sent alongside the bad messages.
GOOD = 20


def _good(count: int) -> list[tuple[str, bytes]]:
    """``count`` good questions as full envelopes with known ids: (id, body)."""
    questions = []
    for number in range(count):
        question_id = str(uuid.uuid4())
        body = {
            "id": question_id,
            "type": "query_received",
            "payload": {"question": f"How does ragbus handle a failed event? (case {number})"},
        }
        questions.append((question_id, json.dumps(body).encode()))
    return questions


def _publish_and_collect(
    url: str,
    exchange: str,
    messages: list[tuple[str, bytes]],
    wanted: set[str],
    timeout: float,
) -> dict[str, int]:
    """What a foreign service does: bind a queue to the answers, publish every message
    with confirms, then count the answers to ``wanted`` questions until each has one or
    ``timeout`` seconds have passed. Returns answers per question id."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    answers: dict[str, int] = {}
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        queue = channel.queue_declare(queue="", exclusive=True).method.queue
        channel.queue_bind(queue, exchange, routing_key="answer_generated")
        for routing_key, body in messages:
            channel.basic_publish(
                exchange,
                routing_key,
                body,
                pika.BasicProperties(content_type="application/json", delivery_mode=2),
                mandatory=True,
            )
        ends = time.monotonic() + timeout
        for _method, _properties, raw in channel.consume(
            queue, auto_ack=True, inactivity_timeout=1.0
        ):
            if raw is not None:
                correlation = str(json.loads(raw).get("correlation_id"))
                answers[correlation] = answers.get(correlation, 0) + 1
            if wanted <= set(answers) or time.monotonic() > ends:
                break
        channel.cancel()
    finally:
        connection.close()
    return answers


def _letters_of(bad: BadInput, letters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The dead letters that hold ``bad`` (found by its marker)."""
    return [
        letter
        for letter in letters
        if bad.marker in (letter.get("raw") or "")
        or bad.marker in json.dumps(letter.get("envelope") or {}, ensure_ascii=False)
    ]


@pytest.mark.timeout(300)
async def test_every_bad_message_is_dead_lettered_once_and_good_ones_are_answered(
    namespace: Namespace, workers: Workers
) -> None:
    retrieve, generate = await asyncio.gather(
        workers.start("retrieve", name="retrieve"), workers.start("generate", name="generate")
    )
    bad = bad_inputs()
    good = _good(GOOD)
    messages: list[tuple[str, bytes]] = []
    for number in range(max(len(bad), len(good))):  # interleaved
        if number < len(good):
            messages.append(("query_received", good[number][1]))
        if number < len(bad):
            messages.append((bad[number].routing_key, bad[number].body))

    answers = await asyncio.to_thread(
        _publish_and_collect,
        namespace.url,
        namespace.exchange,
        messages,
        {question_id for question_id, _ in good},
        90.0,
    )
    missing = [question_id for question_id, _ in good if question_id not in answers]
    assert not missing, f"{len(missing)} good questions unanswered\n{workers.report()}"
    assert all(answers[question_id] == 1 for question_id, _ in good), answers

    async def dead_lettered() -> float:
        total = 0.0
        for worker in (retrieve, generate):
            total += (await worker.metrics()).value("ragbus_dead_lettered_total")
        return total

    async def all_dead_lettered() -> bool:
        return await dead_lettered() >= len(bad)

    await wait_until(
        all_dead_lettered,
        what="every bad message dead-lettered",
        timeout=60,
        interval=0.2,
        report=workers.report,
    )
    stage_queues = [f"{namespace.prefix}.{stage}" for stage in STAGE_NAMES]
    depths = await queue_depths(namespace.url, stage_queues)
    assert set(depths.values()) == {0}, depths

    listed = await workers.run("dlq", "list", "--bus", "rabbitmq", "--json", timeout=120)
    assert listed.code == 0, listed.stderr
    letters = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    wrong = {}
    for item in bad:
        found = _letters_of(item, letters)
        seen = [(letter["stage"], letter["reason"]) for letter in found]
        if seen != [(item.stage, item.reason)]:
            wrong[item.name] = seen
    assert not wrong, f"expected one dead letter each; got {wrong}"
    assert len(letters) == len(bad) == await dead_lettered()
    reasons = sorted({(letter["stage"], letter["reason"]) for letter in letters})
    print(f"{len(bad)} bad messages, {len(letters)} dead letters {reasons}; {GOOD} answered")

    for worker in (retrieve, generate):
        assert worker.alive, worker.describe()
        assert "Traceback" not in worker.log, worker.describe(200)
