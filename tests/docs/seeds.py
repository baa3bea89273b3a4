"""What the reader is assumed to have: notes of their own, dead letters to operate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

#: Documents in ``~/notes`` for examples that index a folder of the reader's own.
NOTES = {
    "release.md": "# Release plan\n\nThe release is on Friday, after the last review.\n",
    "ferns.md": "# Ferns\n\nFerns are plants that reproduce with spores instead of seeds.\n",
}

#: A dead letter shown by id in the README (``ragbus dlq show 3f2a9c1e``).
SHOWN_DEAD_LETTER = uuid.UUID("3f2a9c1e-7b4d-4c2a-9e51-0d6f8a2b7c13")


def dead_letters() -> list[dict[str, object]]:
    """Dead letters as ``ragbus dlq export`` writes them: a generate failure (the LM
    server failed five times; replayable), a retrieve ``invalid`` and a ``failed`` one."""
    now = datetime.now(UTC).isoformat()
    question = "How does ragbus handle a failed event?"
    retrieved = {
        "id": "ddb48a6c-b4cb-59d9-aeec-a6816b2199bf",
        "type": "documents_retrieved",
        "version": 1,
        "correlation_id": "e4d051d2-a2e3-483d-8133-c9ba3fa42e7e",
        "causation_id": "e4d051d2-a2e3-483d-8133-c9ba3fa42e7e",
        "created_at": now,
        "payload": {
            "question": question,
            "passages": [
                {
                    "doc_id": "failures.md#0",
                    "title": "How ragbus handles a failed event",
                    "text": "When an event fails, ragbus classifies the failure once.",
                    "score": 3.2,
                }
            ],
            "history": [],
            "timings_ms": {"retrieve": 0.5},
        },
    }
    record = {"first_failed_at": now, "last_failed_at": now, "worker_id": "docs:1"}
    return [
        {
            "id": str(SHOWN_DEAD_LETTER),
            "stage": "generate",
            "reason": "failed",
            "error_type": "LMServerError",
            "error_message": "503 Service Unavailable",
            "attempts": 5,
            "envelope": retrieved,
            **record,
        },
        {
            "id": str(uuid.uuid4()),
            "stage": "retrieve",
            "reason": "invalid",
            "error_type": "InvalidEvent",
            "error_message": "payload.question: String should have at least 1 character",
            "attempts": 1,
            "envelope": {"type": "query_received", "payload": {"question": ""}},
            **record,
        },
        {
            "id": str(uuid.uuid4()),
            "stage": "generate",
            "reason": "failed",
            "error_type": "TimeoutError",
            "error_message": "the handler took longer than 60s",
            "attempts": 5,
            "envelope": {**retrieved, "id": str(uuid.uuid4())},
            **record,
        },
    ]
