"""The service example (examples/service.py) on real processes: three healthy, ready copies kept through
one copy made unhealthy and one agent partitioned (SIGSTOP) for less than the unreachable timeout."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import pytest

from meseta.agent.containerizer import LABEL_CLUSTER, LABEL_TASK
from meseta.examples.service import ServiceApp
from meseta.sdk import FrameworkClient, run
from meseta.sdk.wire import StatusReason, TaskState
from meseta.testing.processes import ProcessCluster, free_port, quick_failures
from meseta.testing.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.serial, pytest.mark.timeout(300)]

FAST = quick_failures(60)


@pytest.fixture
async def procs(infrastructure: None, tmp_path: Path) -> AsyncIterator[ProcessCluster]:
    async with ProcessCluster(tmp_path, env=FAST) as cluster:
        await cluster.allocator(0)
        await cluster.master(0)
        for i in range(3):
            # Ports of its own, below the ephemeral range (meseta.testing.processes.free_port): the copies
            # publish theirs on this one host.
            ports = "--ports=" + ",".join(str(free_port()) for _ in range(8))
            await cluster.agent(i, f"host-{i}", "--cpus=2", "--mem=1024", ports)
        yield cluster


def _container(run_id: str, task_id: str) -> docker.models.containers.Container:
    client = docker.from_env()
    labels = [f"{LABEL_CLUSTER}={run_id}", f"{LABEL_TASK}={task_id}"]
    (found,) = client.containers.list(filters={"label": labels})
    return found


async def started_at(run_id: str, task_id: str) -> str:
    found = await asyncio.to_thread(_container, run_id, task_id)
    return str(found.attrs["State"]["StartedAt"])


async def test_three_healthy_copies_through_an_unhealthy_one_and_a_partition(procs: ProcessCluster) -> None:
    service = ServiceApp(instances=3)
    client = FrameworkClient(procs.amqp_url, "web", partition_aware=service.partition_aware)
    await client.subscribe(timeout=30)
    loop = asyncio.create_task(run(client, service))
    try:
        await asyncio.wait_for(service.done.wait(), 90)
        assert len(set(service.placed.values())) == 3 and len(service.ready) == 3
        assert all(service.healthy.get(t) for t in service.placed)

        # One copy made unhealthy (its health file removed): killed after 3 failed checks, FAILED with
        # HEALTH_CHECK_FAILED, replaced; three ready copies again.
        sick = sorted(service.placed)[0]
        found = await asyncio.to_thread(_container, procs.run_id, sick)
        await asyncio.to_thread(found.exec_run, ["rm", "/www/health"])
        await wait_for(lambda: (sick, TaskState.FAILED, StatusReason.HEALTH_CHECK_FAILED) in service.replaced,
                       30, "the unhealthy copy replaced")  # fmt: skip
        await wait_for(lambda: service.running == 3 and sick not in service.placed, 60, "three copies again")
        assert len(service.launched) == 4, service.replaced

        # One agent silent past the agent timeout, back well within the unreachable timeout: its copy is
        # UNREACHABLE, not replaced, then RUNNING again in the same container.
        task_id, agent_id = sorted(service.placed.items())[0]
        before = await started_at(procs.run_id, task_id)
        agent = procs.procs[f"agent-{agent_id.rsplit('-', 1)[1]}"]
        agent.send_signal(signal.SIGSTOP)
        try:
            await wait_for(lambda: service.states.get(task_id) == TaskState.UNREACHABLE, 15, "UNREACHABLE")
            assert service.running == 2 and len(service.placed) == 3  # waiting for it, not replacing it
        finally:
            agent.send_signal(signal.SIGCONT)
        await wait_for(lambda: service.running == 3 and service.states.get(task_id) == TaskState.RUNNING,
                       30, "the copy back")  # fmt: skip
        assert len(service.launched) == 4  # no replacement was launched
        assert await started_at(procs.run_id, task_id) == before  # never restarted

        await service.scale(client, 0)
        await asyncio.wait_for(service.done.wait(), 30)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        with contextlib.suppress(Exception):
            await client.teardown()
        await client.close()
