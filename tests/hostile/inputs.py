"""Every kind of bad input a foreign producer can send, each with where it must end.

Each :class:`BadInput` carries a unique marker in its bytes, so that its dead letter
can be found again and counted; the same inputs are used on the bus (published with
pika at real workers) and over HTTP (posted to a real gateway).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

#: The routing keys of the RAG pipeline's two stages.
TO_RETRIEVE = "query_received"
TO_GENERATE = "documents_retrieved"


@dataclass(frozen=True)
class BadInput:
    """One bad message.

    Parameters:
        name: what is wrong with it.
        body: the bytes sent.
        marker: a unique text inside ``body`` (also inside its dead letter).
        routing_key: the routing key it is published with (default: to retrieve).
        stage: the stage that must dead-letter it (default retrieve).
        reason: the dead letter's reason (default ``invalid``).
        http_status: what ``POST /v1/events`` answers (default 422).
    """

    name: str
    body: bytes
    marker: str
    routing_key: str = TO_RETRIEVE
    stage: str = "retrieve"
    reason: str = "invalid"
    http_status: int = 422


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _query(question: str, **fields: Any) -> dict[str, Any]:
    return {"type": "query_received", "payload": {"question": question}, **fields}


def bad_inputs() -> list[BadInput]:
    """One of each kind of bad input, with fresh markers."""
    inputs: list[BadInput] = []

    def add(name: str, make: Any, **options: Any) -> None:
        marker = f"hostile-{name}-{uuid.uuid4().hex[:12]}"
        body = make(marker)
        inputs.append(BadInput(name=name, body=body, marker=marker, **options))

    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    add("not-json", lambda m: f"this is not JSON {m}".encode())
    add("bad-utf8", lambda m: b'{"question": "\xff\xfe' + m.encode() + b'\xc3\x28"}')
    add(
        "deep-nesting",
        lambda m: b'{"m":"' + m.encode() + b'","x":' + b"[" * 20_000 + b"]" * 20_000 + b"}",
    )
    add("json-array", lambda m: _dumps([_query(m)]))
    add("json-string", lambda m: _dumps(m))
    number = str(uuid.uuid4().int)  # a JSON number is its own marker
    inputs.append(BadInput(name="json-number", body=number.encode(), marker=number))
    add("unknown-type", lambda m: _dumps({"type": "no_such_type", "payload": {"question": m}}))
    add("missing-type", lambda m: _dumps({"payload": {"question": m}, "trace": {"m": m}}))
    add("missing-payload", lambda m: _dumps({"type": "query_received", "trace": {"m": m}}))
    add("invalid-k", lambda m: _dumps({**_query(m), "payload": {"question": m, "k": 0}}))
    add("invalid-id", lambda m: _dumps(_query(m, id="not-a-uuid")))
    add("invalid-attempt", lambda m: _dumps(_query(m, attempt=-1)))
    add("extra-field", lambda m: _dumps(_query(m, colour="red")))
    add("empty-question", lambda m: _dumps(_query("   ", trace={"m": m})))
    add("over-long-question", lambda m: _dumps(_query(m + "q" * 4000)))
    add(
        "oversized-body",
        lambda m: _dumps(_query(m, trace={"pad": "x" * 1_100_000})),
        http_status=413,
    )
    add(
        "nan",
        lambda m: b'{"type":"query_received","payload":{"question":"' + m.encode() + b'","k":NaN}}',
    )
    add(
        "infinity",
        lambda m: (
            b'{"type":"query_received","payload":{"question":"' + m.encode() + b'","k":1e400}}'
        ),
    )
    add(
        "huge-integer",
        lambda m: (
            b'{"type":"query_received","payload":{"question":"'
            + m.encode()
            + b'","k":'
            + b"9" * 5000
            + b"}}"
        ),
    )
    add(
        "lone-surrogate",
        lambda m: b'{"type":"query_received","payload":{"question":"' + m.encode() + b'\\ud800"}}',
    )
    add(
        "duplicate-keys",  # a valid question either way: which one depends on the parser
        lambda m: (
            b'{"type":"query_received","payload":{"question":"'
            + m.encode()
            + b' one"},"payload":{"question":"'
            + m.encode()
            + b' two"}}'
        ),
    )
    add(
        "payload-of-another-type",
        lambda m: _dumps(
            {
                "type": "query_received",
                "payload": {
                    "question": m,
                    "passages": [{"doc_id": "d", "text": "t", "score": 1.0}],
                },
            }
        ),
    )
    add(
        "wrong-event-for-the-stage",
        lambda m: _dumps(
            {
                "type": "answer_generated",
                "payload": {"question": m, "answer": "forged", "model": "attacker"},
            }
        ),
        http_status=403,
    )
    add(
        "query-to-generate",
        lambda m: _dumps(_query(m)),
        routing_key=TO_GENERATE,
        stage="generate",
        http_status=0,  # over HTTP the routing key is not the caller's: not a bad input
    )
    add("expired-deadline", lambda m: _dumps(_query(m, deadline=past)), reason="expired")
    return inputs
