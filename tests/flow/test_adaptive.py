"""Adaptive LM concurrency against a stand-in LM with a capacity, counted at the server.

The LM serves 8 calls at once (200 ms idle, 400 ms at capacity, so 20 calls/s at
best: slow enough that the client's own CPU time per call, on a loaded machine, does
not decide the throughput) and answers 429 beyond; the pipeline has 256 questions
outstanding and a stage concurrency of 256, so only the adaptive limit keeps calls off
the LM.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adaptive_load import load_settings, run_load
from tests.lm_server import FakeLMServer

CAPACITY = 8
SECONDS = 24.0


@pytest.mark.slow
@pytest.mark.parametrize("start", [4, 200])
async def test_the_limit_settles_near_the_capacity(
    start: int, lm: FakeLMServer, tmp_path: Path
) -> None:
    capacity = lm.set_capacity(CAPACITY, 0.2)
    settings = load_settings(tmp_path, lm, lm_concurrency_start=start)

    result = await run_load(settings, lm, seconds=SECONDS, outstanding=256)

    low, high = result.limit_range(SECONDS / 2, SECONDS)
    assert low >= CAPACITY * 0.75 and high <= CAPACITY * 1.25, result.limits[-20:]
    rate = result.rate(SECONDS / 2, SECONDS)
    assert rate >= 0.9 * capacity.throughput(), (rate, capacity.throughput())
    assert result.refused_share(SECONDS / 2, SECONDS) < 0.01
    assert result.answered > 0
