"""Drive a headless Chromium over the DevTools protocol (CDP) with a small client: enough
to open a page, run script in it and take a screenshot."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

#: Flags for a quiet, isolated headless browser that reaches no network of its own.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,900",
    "--remote-debugging-port=0",
)


def find_chromium() -> str | None:
    """The Chromium executable, or None when it is not installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


class Page:
    """One page of the browser, driven by CDP commands sent one at a time."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self._next_id = 0

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a CDP command and return its result (events in between are ignored)."""
        self._next_id += 1
        command_id = self._next_id
        await self.socket.send(json.dumps({"id": command_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.recv())
            if message.get("id") != command_id:
                continue
            if "error" in message:
                raise RuntimeError(f"{method} failed: {message['error']}")
            result: dict[str, Any] = message.get("result", {})
            return result

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if a promise)."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def open(self, url: str, *, timeout: float = 10.0) -> None:
        """Navigate to ``url`` and wait until the document is loaded."""
        await self.send("Page.enable")
        await self.send("Page.navigate", url=url)
        async with asyncio.timeout(timeout):
            while await self.evaluate("document.readyState") != "complete":
                await asyncio.sleep(0.05)

    async def screenshot(self, path: Path) -> None:
        """Save a PNG of the page to ``path``."""
        result = await self.send("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(result["data"]))


@contextlib.asynccontextmanager
async def chromium_page(executable: str, profile: Path) -> AsyncIterator[Page]:
    """A headless Chromium with a blank page, stopped afterwards.

    Parameters:
        executable: the Chromium binary.
        profile: an empty folder for the browser's profile (``--user-data-dir``).
    """
    process = await asyncio.create_subprocess_exec(
        executable,
        *FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        async with asyncio.timeout(20):
            while not (text := await asyncio.to_thread(_read, port_file)):
                if process.returncode is not None:
                    raise RuntimeError(f"Chromium exited with {process.returncode}")
                await asyncio.sleep(0.05)
            port = int(text.split()[0])
            async with httpx.AsyncClient(trust_env=False) as http:
                while True:
                    targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
                    pages = [t for t in targets if t.get("type") == "page"]
                    if pages:
                        break
                    await asyncio.sleep(0.05)
        async with websockets.connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as socket:
            yield Page(socket)
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


def _read(path: Path) -> str:
    """The text of ``path``, or "" while it does not exist yet."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
