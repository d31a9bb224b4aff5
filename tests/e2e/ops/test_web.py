"""The master's web page in real headless Chromium: a screenshot, assertions on what it renders, and its
event stream updating it live."""

from __future__ import annotations

import html
import re
import shutil
import time
from pathlib import Path

import pytest

from meseta.sdk import wire
from meseta.testing.browser import chromium_page
from meseta.testing.local import local_cluster, short_task, until_state
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.e2e

LONG = "sleep 60"
HOLD_READS = (
    "clearTimeout(timer); window.held = []; window.unheld = window.fetch;"
    "window.fetch = (...a) => window.unheld(...a)"
    ".then(r => new Promise(give => window.held.push(() => give(r))))"
)
"""Stops the page's periodic reads of the state, and holds every read's answer in ``window.held``."""
EVENT_SHOWN = "[...document.querySelectorAll('#events tr.event')].some(r => r.textContent.includes('{text}'))"

SCREENSHOTS = Path(__file__).resolve().parents[3] / "build" / "screenshots"


async def test_page_shows_agents_shares_and_cycles(amqp_url: str, etcd_prefix: str, tmp_path: Path) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=3) as cluster:
        await cluster.master.leading.wait()
        runner = await cluster.framework("analytics", role="batch")
        task = short_task("web-1", cpus=1.5, mem=256, script="sleep 60")
        agent_id, _ = await until_state(runner, wire.TaskState.RUNNING, task)
        await wait_for(lambda: len(cluster.master.activity.samples) >= 5, 10, "share samples")
        url = f"http://127.0.0.1:{cluster.master.api.port}/"

        shot = tmp_path / "page.png"
        async with chromium_page(url, tmp_path / "profile") as page:
            await page.until("document.getElementById('stream').textContent === '(live)'", 20, "event stream")
            await page.until("document.querySelectorAll('polyline.share-line').length", 20, "share chart")
            dom = await page.evaluate("document.documentElement.outerHTML")

            # The event stream drives the page: a task launched now is listed, and counted in the status
            # line, within a second and a half (the page reads the state on its own only every 5 s).
            launched = time.monotonic()
            await runner.revive()  # until_state declined every other offer for a minute
            await until_state(
                runner, wire.TaskState.RUNNING, short_task("web-2", cpus=0.1, script="sleep 60")
            )
            row = await page.until(
                "[...document.querySelectorAll('#events tr.event')].map(r => r.textContent)"
                ".find(t => t.includes('web-2 of') && t.includes('RUNNING'))",
                1.5,
                "TASK_UPDATED row for web-2",
            )
            assert runner.framework_id in row
            await page.until(
                "document.getElementById('status').textContent.includes('2 tasks')",
                1.5,
                "2 tasks in the status",
            )
            print(f"web-2 RUNNING on the page {time.monotonic() - launched:.2f} s after its launch")
            await page.screenshot(shot)

            # An event that comes while the page reads the state is not lost: the page reads it again. No
            # periodic reads from here, and every read's answer is held until released.
            await page.evaluate(HOLD_READS)
            await runner.revive()
            await until_state(runner, wire.TaskState.RUNNING, short_task("web-3", cpus=0.1, script=LONG))
            await page.until("window.held.length", 5, "a state read after web-3's events")
            # web-4's events come while that read is held.
            await runner.revive()
            await until_state(runner, wire.TaskState.RUNNING, short_task("web-4", cpus=0.1, script=LONG))
            await page.until(EVENT_SHOWN.format(text="web-4 of"), 5, "web-4's events on the page")
            await page.evaluate("window.fetch = window.unheld; window.held.splice(0).forEach(give => give())")
            status = "document.getElementById('status').textContent"
            await page.until(f"{status}.includes('4 tasks')", 3, "4 tasks in the status")

    status = re.search(r'<div id="status"[^>]*>([^<]*)<', dom)
    assert status and "leader " + cluster.master.settings.name in html.unescape(status.group(1))
    assert "3 agents" in status.group(1) and "1 tasks" in status.group(1)
    # One row per agent; the agent running the task shows 1.5 of 2 cpus used (a 75 % bar, or more with
    # what is offered on it).
    rows = re.findall(r'<tr class="agent" data-id="([^"]+)">(.*?)</tr>', dom)
    assert {r[0] for r in rows} == {a.agent_id for a in cluster.agents}
    busy = next(body for agent, body in rows if agent == agent_id)
    fraction = float(re.findall(r'data-fraction="([0-9.]+)"', busy)[0])
    assert 0.75 <= fraction <= 1.0
    # The framework with its shares, and its line on the share-over-time chart.
    framework = re.search(rf'<tr class="framework" data-id="{runner.framework_id}">(.*?)</tr>', dom)
    assert framework and "analytics" in framework.group(1) and "batch" in framework.group(1)
    line = re.search(rf'<polyline class="share-line" data-id="{runner.framework_id}" points="([^"]+)"', dom)
    assert line and len(line.group(1).split()) >= 5
    # Recent offer cycles, with the accepted one and its round trip.
    cycles = re.findall(r'<tr class="cycle">(.*?)</tr>', dom)
    assert any("<td>accept</td>" in c and re.search(r'<td class="num">\d+\.\d</td>$', c) for c in cycles)

    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a rendered page, not a blank one
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENSHOTS / "web.png")
