"""The tutorial in docs/SDK.md, executed as written against a real cluster."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from meseta.testing.local import local_cluster
from tests.snippets import ROOT, code_blocks

pytestmark = pytest.mark.e2e


def tutorial_code() -> str:
    return code_blocks(ROOT / "docs" / "SDK.md", "python")[0]


def test_the_tutorial_is_short() -> None:
    assert len(tutorial_code().strip().splitlines()) < 60  # under 50 lines of code, blank lines aside
    assert sum(1 for line in tutorial_code().splitlines() if line.strip()) < 50


async def run_program(code: str, amqp_url: str) -> str:
    """Run a page's program as printed, against the cluster at ``amqp_url``; its output (it must exit 0)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env={**os.environ, "MESETA_AMQP_URL": amqp_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    return text


async def test_the_tutorial_runs(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1):
        text = await run_program(tutorial_code(), amqp_url)
    for i in range(3):
        assert f"hello-{i}: FINISHED" in text
    assert "done: 3 tasks on" in text


async def test_the_failover_example_runs(amqp_url: str, etcd_prefix: str) -> None:
    failover = code_blocks(ROOT / "docs" / "SDK.md", "python")[1]
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        text = await run_program(failover, amqp_url)
        framework_id = text.split("back as ")[1].split()[0]
        # It came back as itself, then tore itself down.
        assert framework_id not in cluster.master.cluster.frameworks


async def test_the_health_and_kill_example_runs(amqp_url: str, etcd_prefix: str) -> None:
    _, _, checked = code_blocks(ROOT / "docs" / "SDK.md", "python")
    async with local_cluster(amqp_url, etcd_prefix, agents=1):
        text = await run_program(checked, amqp_url)
    assert "web-1: RUNNING healthy=True healthy" in text, text
    assert "web-1: KILLING healthy=True SIGTERM, then SIGKILL after 5 s" in text, text
    assert "web-1: KILLED" in text, text
