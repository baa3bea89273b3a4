"""The offline LM's analyses are the same in every process, whatever the hash seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.unit.test_offline_lm_analysis import TEXTS

# Analyses every text in one batch call through DSPy, and prints them as JSON.
_PROGRAM = """
import asyncio, json, sys
import dspy
from ragbus.handlers.analyze import AnalyzeTexts
from ragbus.lm import lm_scope, offline_lm

async def main():
    with lm_scope(offline_lm()):
        prediction = await dspy.Predict(AnalyzeTexts).acall(texts=json.load(sys.stdin))
    print(json.dumps([a.model_dump() for a in prediction.analyses], ensure_ascii=False))

asyncio.run(main())
"""


def analyses_in_a_fresh_process(hash_seed: str) -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-c", _PROGRAM],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        check=True,
    )
    decoded: list[dict[str, object]] = json.loads(result.stdout)
    return decoded


@pytest.mark.slow
def test_two_processes_with_different_hash_seeds_give_the_same_analyses() -> None:
    first = analyses_in_a_fresh_process("1")
    second = analyses_in_a_fresh_process("4242")

    assert len(first) == len(TEXTS)
    assert first == second
