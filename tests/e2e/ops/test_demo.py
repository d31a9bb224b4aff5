"""The README's first command, small: real processes for every service, two frameworks, a summary."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


async def test_demo_runs_and_prints_its_summary(infrastructure: None, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meseta.cli",
        "demo",
        "--batch-tasks",
        "6",
        "--service-tasks",
        "1",
        "--timeout",
        "90",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "MESETA_DEMO_LOGS": str(tmp_path)},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "Meseta demo summary" in text
    assert "FINISHED 6" in text
    assert "KILLED 1" in text
    assert "demo finished" in text
    ready = {"master-0": "leads master", "allocator-0": "allocator active", "agent-0": "started"}
    ready |= {"agent-1": "started", "agent-2": "started"}
    for service, line in ready.items():
        assert line in (tmp_path / f"{service}.log").read_text(), service
