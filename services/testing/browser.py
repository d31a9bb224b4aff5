"""Headless Chromium driven over the DevTools protocol, for tests of the master's web page.

Chromium's one-shot modes (``--dump-dom``, ``--screenshot``) need ``--virtual-time-budget`` to let a page's
timers run, and virtual time stands still while a request is open: a page that holds an event stream
never finishes. Over DevTools the page runs in real time and the test reads it whenever it likes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# No network here: without these, Chromium spends its start-up on refused background connections.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


class Page:
    """One tab: navigate, evaluate JavaScript, take a screenshot."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self._ws.send_json({"id": call_id, "method": method, "params": params})

        async def answer() -> dict[str, Any]:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data: dict[str, Any] = msg.json()
                if data.get("id") == call_id:  # events (no id) and other answers are not waited for
                    if "error" in data:
                        raise RuntimeError(f"{method}: {data['error']}")
                    result: dict[str, Any] = data.get("result", {})
                    return result
            raise RuntimeError(f"the browser closed the connection during {method}")

        return await asyncio.wait_for(answer(), timeout)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def until(self, expression: str, timeout: float, what: str) -> Any:
        """The first truthy value of ``expression``, polled every 50 ms."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = await self.evaluate(expression)
            if last:
                return last
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {what} within {timeout} s (last: {last!r})")

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def chromium_page(
    url: str, profile: Path, width: int = 1100, height: int = 1300
) -> AsyncIterator[Page]:
    """Chromium showing ``url``, until the block ends (then it is stopped)."""
    assert CHROMIUM, "chromium is not installed: scripts/infra.sh installs it"
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
        f"--window-size={width},{height}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port = await _devtools_port(profile / "DevToolsActivePort", proc, 60)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            tab = next(t for t in targets if t.get("type") == "page")
            async with http.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=64 * 2**20) as ws:
                page = Page(ws)
                await page.call("Page.enable")
                await page.call("Page.navigate", url=url)
                await page.until("document.readyState === 'complete'", 30, "loaded page")
                yield page
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _devtools_port(path: Path, proc: asyncio.subprocess.Process, timeout: float) -> int:
    """Chromium writes the port it chose (first line) once it listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise AssertionError(f"chromium exited ({proc.returncode}) before it listened")
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((await asyncio.to_thread(path.read_text)).splitlines()[0])
        await asyncio.sleep(0.05)
    raise AssertionError(f"chromium did not listen within {timeout} s")
