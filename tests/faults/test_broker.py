"""Broker faults: connections dropped under a running workload are survived."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from tests.cluster import local_cluster, run_batch, short_task
from tests.conftest import wait_for

pytestmark = pytest.mark.e2e


def drop_connections(vhost: str) -> str:
    """Force-close every client connection of a vhost, as a broker restart would."""
    done = subprocess.run(
        ["rabbitmqctl", "close_all_connections", "--vhost", vhost, "meseta fault test"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout + done.stderr


async def test_dropped_connections_mid_workload(amqp_url: str, etcd_prefix: str) -> None:
    vhost = amqp_url.rsplit("/", 1)[1]
    async with local_cluster(amqp_url, etcd_prefix, agents=2) as cluster:
        client = await cluster.framework("steady")
        tasks = [short_task(f"t-{i}", cpus=0.5, mem=32, script="sleep 0.3") for i in range(24)]
        workload = asyncio.create_task(run_batch(client, tasks))
        await wait_for(lambda: client.stats.tasks_launched >= 6, 30, "the workload to start")
        await asyncio.to_thread(drop_connections, vhost)
        run = await asyncio.wait_for(workload, 120)
        assert run.states() == {"FINISHED": 24}
        # Every party lost its connection and came back on its own.
        for bus in (cluster.master.bus, cluster.allocator.bus, *(a.bus for a in cluster.agents), client._bus):
            assert bus.reconnects >= 1, bus.service
