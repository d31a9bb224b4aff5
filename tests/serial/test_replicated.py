"""The replicated control plane losing one node of each kind, mid-workload: a three-node RabbitMQ cluster
(quorum queues) and a three-member etcd cluster of the test's own (meseta.testing.replicas), two masters,
two allocators, three agents as processes, and a framework running 120 tasks. The RabbitMQ node that leads
the most queues is SIGKILLed, then etcd's leader, then the leading master; every task must reach exactly one
terminal state at its framework, and the scheduler must see no update twice. Prints the time from each kill
to offers flowing again."""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meseta.sdk import FrameworkClient, wire
from meseta.testing.local import short_task
from meseta.testing.processes import ProcessCluster
from meseta.testing.replicas import RABBITMQ_SERVER, EtcdCluster, RabbitCluster, etcd_cluster, rabbit_cluster
from meseta.testing.waiting import wait_for
from tests.serial.resilient import ResilientBatch
from tests.serial.test_processes import leader

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.serial,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        shutil.which("etcd") is None or not Path(RABBITMQ_SERVER).exists(),
        reason="no etcd or RabbitMQ binary",
    ),
]

# 3 s leases: losing etcd's leader stalls every write for an election (about a second here); a lease
# keeper that moves to another member refreshes within the 2 s it has left, so the master keeps leading.
ENV = {
    "MESETA_HEARTBEAT_INTERVAL": "0.5",
    "MESETA_AGENT_TIMEOUT": "4",
    "MESETA_CONTAINER_RETENTION": "60",
    "MESETA_LEASE_TTL": "3",
}
TASKS = 120


@pytest.fixture
async def replicated(
    infrastructure: None, tmp_path: Path
) -> AsyncIterator[tuple[RabbitCluster, EtcdCluster]]:
    async with rabbit_cluster(tmp_path / "rabbitmq") as rabbit, etcd_cluster(tmp_path / "etcd") as etcd:
        await etcd.leader()  # elected
        yield rabbit, etcd


def recovery(job: ResilientBatch, since: float, epoch: int = 0) -> float | None:
    """Seconds from ``since`` to the first offer (of an epoch above ``epoch``) after it."""
    later = [t for t, e in job.offer_times if t > since and e > epoch]
    return min(later) - since if later else None


async def test_losing_a_node_of_each_kind_loses_no_task(
    replicated: tuple[RabbitCluster, EtcdCluster], tmp_path: Path
) -> None:
    rabbit, etcd = replicated
    cluster = ProcessCluster(
        tmp_path / "logs",
        amqp_host=rabbit.hosts,
        management_url=rabbit.management().url,
        etcd_endpoint=etcd.endpoints,
        env=ENV,
    )
    async with cluster as procs:
        # A leader may step down on its own while etcd elects (it cannot refresh): it comes back as a
        # standby, as compose's restart policy brings it back.
        procs.restart_on_exit = ("master", "allocator")
        for i in range(2):
            await procs.allocator(i)
            await procs.master(i)
        for i in range(3):
            await procs.agent(i, f"host-{i}", "--cpus=2", "--mem=2048")
        await wait_for(lambda: leader(procs) is not None, 60, "a leading master")
        client = FrameworkClient(procs.amqp_url, "replicated")
        await client.subscribe(timeout=60)
        job = ResilientBatch(
            client, [short_task(f"t{i}", cpus=0.25, mem=16, script="true") for i in range(TASKS)]
        )
        loop = asyncio.create_task(job.run())
        times: dict[str, float | None] = {}
        try:

            def finished() -> int:
                return len(job.terminal)

            await wait_for(lambda: finished() >= 20, 180, "the first tasks")
            # The RabbitMQ node that leads the most queues (quorum queues' Raft leaders).
            busiest, _ = rabbit.leaders(procs.vhost).most_common(1)[0]
            (node,) = [n for n in rabbit.nodes if n.node == busiest]
            killed_at = time.time()
            rabbit.kill(node)
            procs.management_url = rabbit.management().url
            await wait_for(
                lambda: recovery(job, killed_at) is not None, 60, "offers after a broker node's loss"
            )
            times["rabbitmq node"] = recovery(job, killed_at)
            mark = finished()
            await wait_for(lambda: finished() >= mark + 20, 180, "tasks after a broker node's loss")

            member = await etcd.leader()
            killed_at = time.time()
            etcd.kill(member)
            await wait_for(
                lambda: recovery(job, killed_at) is not None, 60, "offers after etcd's leader's loss"
            )
            times["etcd leader"] = recovery(job, killed_at)
            mark = finished()
            await wait_for(lambda: finished() >= mark + 20, 180, "tasks after etcd's leader's loss")

            old = leader(procs)
            assert old is not None
            epoch = max(e for _, e in job.offer_times)
            killed_at = time.time()
            await procs.kill(old, signal.SIGKILL)
            await wait_for(lambda: recovery(job, killed_at, epoch) is not None, 60, "offers of a new leader")
            times["leading master"] = recovery(job, killed_at, epoch)

            await asyncio.wait_for(job.done.wait(), 300)
            for kind, seconds in times.items():
                print(f"{kind} killed: offers again {seconds:.2f} s later")
            assert set(job.terminal.values()) == {1}, "every task ends exactly once at its framework"
            assert {job.states[t] for t in job.by_id} == {wire.TaskState.FINISHED}
            assert max(job.deliveries.values()) == 1, "an update reached the scheduler twice"
            print(f"updates resent over the wire and dropped as duplicates: {client.stats.duplicate_updates}")
        finally:
            loop.cancel()
            await client.close()
