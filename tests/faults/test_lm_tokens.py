"""RAGBUS_LM_TPM: the tokens the LM reports are counted, and a spent minute holds calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragbus.client import AnswerTimeout, Client
from tests.faults.support import QUESTION, fault_settings
from tests.lm_server import FakeLMServer

pytestmark = pytest.mark.timeout(60)

#: The stand-in LM reports 20 tokens per call.
TOKENS_PER_CALL = 20


async def test_a_spent_token_budget_holds_further_calls(tmp_path: Path, lm: FakeLMServer) -> None:
    settings = fault_settings(tmp_path, lm, lm_tpm=5 * TOKENS_PER_CALL)
    async with Client(settings) as client:
        for n in range(5):
            await client.ask(f"{QUESTION} ({n})", timeout=20)
        assert lm.calls == 5
        with pytest.raises(AnswerTimeout):
            await client.ask(f"{QUESTION} (one too many)", timeout=2)
    assert lm.calls == 5  # the sixth question waited for the next minute's budget
