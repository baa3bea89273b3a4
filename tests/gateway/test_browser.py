"""A person's view: headless Chromium opens the chat page served by uvicorn, asks a
question, watches the answer stream in with its stages and sources, and takes a
screenshot (``test-artifacts/gateway-chat.png``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.conftest import unavailable
from tests.gateway.browser import chromium_page, find_chromium
from tests.gateway.conftest import QUESTION, AppFactory, ServeFactory

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

#: What the page shows, read in one go.
READ_PAGE = """JSON.stringify({
  status: document.getElementById("status").textContent,
  answer: [...document.querySelectorAll("#conversation .a")].map((e) => e.textContent),
  question: [...document.querySelectorAll("#conversation .q")].map((e) => e.textContent),
  stages: [...document.querySelectorAll("#stages li")].map((e) => e.className),
  sources: [...document.querySelectorAll("#sources li .doc")].map((e) => e.textContent),
  background: getComputedStyle(document.body).backgroundColor,
})"""


@pytest.mark.parametrize("bus_kind", ["memory"])
@pytest.mark.timeout(60)
async def test_the_chat_page_streams_an_answer_with_its_sources(
    make_app: AppFactory, serve: ServeFactory, tmp_path: Path
) -> None:
    executable = find_chromium()
    if executable is None:
        unavailable("Chromium is not installed (Debian: apt-get install -y chromium)")
        return
    base = await serve(await make_app(lm_latency_ms=1200.0))
    async with chromium_page(executable, tmp_path / "profile") as page:
        await page.open(base + "/")
        assert await page.evaluate("document.title") == "ragbus chat"
        await page.evaluate(
            f"document.getElementById('question').value = {json.dumps(QUESTION)};"
            "document.getElementById('ask').click();"
        )
        partial_lengths: set[int] = set()
        async with asyncio.timeout(20):
            while True:
                seen = json.loads(await page.evaluate(READ_PAGE))
                if seen["status"] in ("done", "failed"):
                    break
                if seen["answer"]:
                    partial_lengths.add(len(seen["answer"][-1]))
                await asyncio.sleep(0.03)
        await page.screenshot(ARTIFACTS / "gateway-chat.png")
    assert seen["status"] == "done", seen  # the policy let the page's script run
    assert seen["background"] == "rgb(246, 247, 251)"  # ... and its style apply
    assert seen["question"] == [QUESTION]
    [answer] = seen["answer"]
    assert "ragbus" in answer and not answer.startswith("Error")
    assert len(partial_lengths - {0, len(answer)}) >= 2  # the answer grew token by token
    assert seen["stages"] == ["done", "done"]
    assert seen["sources"] and seen["sources"][0].startswith("failures.md#")
    assert (ARTIFACTS / "gateway-chat.png").stat().st_size > 10_000
