"""An unmodified pymesos (0.3.15, from PyPI) scheduler runs Docker tasks on Meseta through the gateway."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from meseta.runtime.defaults import TASK_IMAGE
from meseta.testing.local import local_cluster
from meseta.testing.mesos import running_gateway
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.timeout(400)

ROOT = Path(__file__).resolve().parents[2]
SCHEDULER = Path(__file__).with_name("pymesos_scheduler.py")
VENV = ROOT / "build" / "pymesos-venv"
TASKS = 20


@pytest.fixture(scope="module")
def pymesos_python() -> Path:
    """The virtual environment with pymesos, made once (scripts/pymesos-venv.sh: PyPI, then cached)."""
    made = subprocess.run(
        ["bash", str(ROOT / "scripts" / "pymesos-venv.sh"), str(VENV)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    return VENV / "bin" / "python"


async def test_pymesos_runs_twenty_docker_tasks_and_tears_down(
    amqp_url: str, etcd_prefix: str, pymesos_python: Path
) -> None:
    async with (
        local_cluster(amqp_url, etcd_prefix, agents=2) as cluster,
        running_gateway(amqp_url, etcd_prefix) as gateway,
    ):
        proc = await asyncio.create_subprocess_exec(
            str(pymesos_python),
            str(SCHEDULER),
            f"127.0.0.1:{gateway.port}",
            str(TASKS),
            TASK_IMAGE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 300)
        log = err.decode()[-4000:]
        assert proc.returncode == 0, log
        report = json.loads(out.decode().strip().splitlines()[-1])
        assert report["finished"], log
        assert Counter(report["final"].values()) == {"TASK_FINISHED": TASKS}, report["final"]
        # Each task was seen starting and running before it finished, through pymesos's own parsing.
        seen = Counter(report["seen"])
        assert seen["TASK_RUNNING"] >= TASKS and seen["TASK_FINISHED"] == TASKS
        framework_id = report["framework_id"]
        assert framework_id and framework_id.startswith("fw-")
        # pymesos acknowledged every update (implicitly, with the uuids it was given), then tore down:
        # no agent keeps an update for the framework, and the master has forgotten it.
        acks = gateway.api.calls[("ACKNOWLEDGE", "202")]
        assert acks >= 2 * TASKS, gateway.api.calls
        assert gateway.api.calls[("TEARDOWN", "202")] == 1
        await wait_for(lambda: all(a.updates.pending[framework_id] == 0 for a in cluster.agents), 20, "acks")
        await wait_for(lambda: framework_id not in cluster.master.cluster.frameworks, 20, "the teardown")
        assert gateway.api.frameworks == {}  # its subscription ended with the teardown
