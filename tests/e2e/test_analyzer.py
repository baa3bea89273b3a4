"""The real-time text analyzer: ``ragbus analyze`` streams texts through batched LM calls,
as a user runs it, against an LM server over HTTP that counts its calls."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from tests.lm_server import FakeLMServer

TEXTS = 1000


def analyze(
    directory: Path, *arguments: str, stdin: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGBUS_")}
    env.update({f"RAGBUS_{name.upper()}": value for name, value in settings.items()})
    env["RAGBUS_DLQ_PATH"] = str(directory / "dlq.sqlite3")
    return subprocess.run(
        [sys.executable, "-m", "ragbus.cli", "analyze", *arguments],
        input=stdin,
        env=env,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_thousand_texts_take_a_batch_of_sixteen_per_lm_call(
    tmp_path: Path, lm: FakeLMServer
) -> None:
    lines = [f"Text number {n}: the service was fine." for n in range(TEXTS)]
    lines[500] = '{"text": "broken'  # a malformed line in the middle of the stream
    done = analyze(
        tmp_path,
        "--batch-size",
        "16",
        stdin="\n".join(lines) + "\n",
        lm_model="openai/test-model",
        lm_api_base=lm.api_base,
        lm_api_key="test",
        cache_enabled="false",
    )
    results = [json.loads(line) for line in done.stdout.splitlines()]
    numbers = [result["line"] for result in results]
    assert sorted(numbers) == [n for n in range(1, TEXTS + 1) if n != 501]  # none lost or twice
    assert len(set(numbers)) == TEXTS - 1
    assert all(
        result["sentiment"] == "neutral" and result["offline"] is False for result in results
    )
    assert "error: line 501: malformed JSON" in done.stderr
    assert done.stderr.strip().endswith("999 analyzed, 1 invalid lines, 0 failed")
    assert done.returncode == 1  # a line was refused
    assert lm.calls <= math.ceil((TEXTS - 1) / 16) + 5, lm.calls


def test_the_offline_lm_analyzes_a_stream_and_flushes_the_last_batch(tmp_path: Path) -> None:
    texts = [
        "I love this phone, the battery is excellent.",
        '{"text": "Terrible support from Acme Corp in Berlin.", "source": "ticket-7"}',
        "",
        "The parcel arrived on Monday.",
    ]
    done = analyze(tmp_path, stdin="\n".join(texts) + "\n")
    assert done.returncode == 0, done.stderr
    results = {result["line"]: result for result in map(json.loads, done.stdout.splitlines())}
    assert set(results) == {1, 2, 4}
    assert results[1]["sentiment"] == "positive" and results[1]["score"] > 0
    assert results[2]["sentiment"] == "negative" and results[2]["source"] == "ticket-7"
    assert {"text": "Acme Corp", "type": "organization"} in results[2]["entities"]
    assert {"text": "Berlin", "type": "place"} in results[2]["entities"]
    assert all(result["offline"] is True for result in results.values())
