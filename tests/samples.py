"""Small document corpora written to temporary folders, for retrieval and handler tests."""

from __future__ import annotations

import json
from pathlib import Path

RETRIES_MD = """\
# Retries

ragbus retries a transient failure a few times in process, with jittered exponential
backoff, before it schedules a delayed redelivery of the event.

## Dead letters

An event that keeps failing goes to the dead-letter queue of its stage. An operator
lists dead letters with `ragbus dlq list` and replays them with `ragbus dlq replay`.

## Breakers

A circuit breaker opens when the failure rate of a dependency passes its threshold.
While the breaker is open, the stage pauses consuming and no attempt is counted.
"""

GARDEN_TXT = """\
Tomatoes need six to eight hours of direct sunlight every day to ripen well.

Water the tomato plants deeply twice a week rather than a little every day.
"""

FAQ_LINES = [
    {"id": "faq-cache", "title": "Caching", "text": "The cache key holds the stage fingerprint."},
    {"text": "Workers share the cache through Redis when RAGBUS_CACHE_URL is set."},
]


def write_corpus(root: Path) -> Path:
    """A corpus of one Markdown, one text and one JSONL file (plus files to skip) in
    ``root``; returns ``root``."""
    (root / "guide").mkdir(parents=True)
    (root / "guide" / "retries.md").write_text(RETRIES_MD, encoding="utf-8")
    (root / "garden.txt").write_text(GARDEN_TXT, encoding="utf-8")
    (root / "faq.jsonl").write_text(
        "\n".join(json.dumps(line) for line in FAQ_LINES) + "\n\n", encoding="utf-8"
    )
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.md").write_text("# Secret\n\nNot part of the corpus.\n")
    (root / "script.py").write_text("print('not a document')\n")
    return root
