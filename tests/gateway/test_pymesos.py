"""docs/MESOS_API.md's pymesos blocks as written: a gateway process, then an unmodified pymesos (0.3.15,
from PyPI) scheduler that runs 20 Docker tasks on Meseta through it, acknowledges and tears down."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meseta.testing.local import local_cluster
from meseta.testing.processes import free_port
from meseta.testing.waiting import wait_for
from tests.snippets import ROOT, code_blocks

pytestmark = pytest.mark.timeout(400)

PAGE = ROOT / "docs" / "MESOS_API.md"
TASKS = 20


def _calls(port: int) -> Counter[tuple[str, str]]:
    """The gateway's meseta_gateway_calls, by (call, HTTP answer), from its /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "meseta_gateway_calls":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[(sample.labels["call"], sample.labels["code"])] += int(sample.value)
    return found


async def test_pymesos_runs_twenty_docker_tasks_through_the_gateway(amqp_url: str, etcd_prefix: str) -> None:
    start, run = code_blocks(PAGE, "sh")
    assert start.strip().endswith("&") and "127.0.0.1:5052" in run and f" {TASKS} " in run
    port = free_port()
    env = {
        **os.environ,
        "MESETA_AMQP_URL": amqp_url,
        "MESETA_ETCD_PREFIX": etcd_prefix,
        "MESETA_GATEWAY_PORT": str(port),
    }
    async with local_cluster(amqp_url, etcd_prefix, agents=2) as cluster:
        # The first block, in the foreground of a process of its own (the page sends it to the background).
        gateway = await asyncio.create_subprocess_exec(
            "bash", "-c", "exec " + start.strip().removesuffix("&"), cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            scheduler = await asyncio.create_subprocess_exec(
                "bash", "-euo", "pipefail", "-c", run.replace("127.0.0.1:5052", f"127.0.0.1:{port}"),
                cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(scheduler.communicate(), 360)
            log = err.decode()[-4000:]
            assert scheduler.returncode == 0, log
            report = json.loads(out.decode().strip().splitlines()[-1])
            assert report["finished"], log
            assert Counter(report["final"].values()) == {"TASK_FINISHED": TASKS}, report["final"]
            # Each task was seen running before it finished, through pymesos's own parsing of the stream.
            seen = Counter(report["seen"])
            assert seen["TASK_RUNNING"] >= TASKS and seen["TASK_FINISHED"] == TASKS
            framework_id = report["framework_id"]
            assert framework_id and framework_id.startswith("fw-")
            # pymesos acknowledged every update (implicitly, with the uuids it was given), then tore down:
            # no agent keeps an update for the framework, and the master has forgotten it.
            calls = await asyncio.to_thread(_calls, port)
            assert calls[("ACKNOWLEDGE", "202")] >= 2 * TASKS and calls[("TEARDOWN", "202")] == 1, calls
            assert calls[("SUBSCRIBE", "200")] == 1 and not [
                c for c in calls if c[1] != "200" and c[1] != "202"
            ]
            await wait_for(
                lambda: all(a.updates.pending[framework_id] == 0 for a in cluster.agents), 20, "acks"
            )
            await wait_for(lambda: framework_id not in cluster.master.cluster.frameworks, 20, "the teardown")
        finally:
            if gateway.returncode is None:
                gateway.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(gateway.communicate(), 30)
        assert gateway.returncode == 0, output.decode()[-3000:]
