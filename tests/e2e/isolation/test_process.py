"""The process isolator: subprocess tasks with an enforced memory limit, no Docker involved."""

from __future__ import annotations

import sys

import pytest

from meseta.agent.process import ProcessContainerizer, agent_cgroups, cgroups_writable
from meseta.sdk import wire
from meseta.testing.local import local_cluster, run_one, short_task

pytestmark = pytest.mark.e2e


async def test_process_isolator_enforces_memory(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1, isolator="process") as cluster:
        client = await cluster.framework("local")
        ok = short_task("fits", mem=64).model_copy(
            update={
                "container": wire.ContainerSpec(
                    image="ignored", command=(sys.executable, "-c", "print('fits')")
                )
            }
        )
        status = await run_one(client, ok)
        assert status.state == wire.TaskState.FINISHED
        assert (await client.logs("fits")).stdout == "fits\n"

        hog = ok.model_copy(
            update={
                "task_id": "hog",
                "container": wire.ContainerSpec(
                    image="ignored",
                    command=(sys.executable, "-c", "b = bytearray(512 << 20); print('survived')"),
                ),
            }
        )
        status = await run_one(client, hog)
        assert status.state == wire.TaskState.FAILED
        logs = await client.logs("hog")
        assert "survived" not in logs.stdout
        if cgroups_writable():
            # The task's own memory cgroup killed it.
            assert status.reason == wire.StatusReason.OOM_KILLED
        else:
            # RLIMIT_AS refused the allocation.
            assert status.reason == wire.StatusReason.CONTAINER_EXITED and "MemoryError" in logs.stderr
        containerizer = cluster.agents[0].containerizer
        assert isinstance(containerizer, ProcessContainerizer)
        assert cluster.master.cluster.tasks == {}
        if cgroups_writable():
            # Both tasks ended: their cgroups are gone already, though their sandboxes are kept (retention).
            mine = agent_cgroups(containerizer.agent_id)
            assert [[c for c in group.iterdir() if c.is_dir()] for group in mine] == [[], []]
            # What an earlier run of this agent left (stopped before its tasks' retention ran out) is
            # removed when it starts again.
            left = [group / "proc-left-behind" for group in mine]
            for cgroup in left:
                cgroup.mkdir()
            await containerizer.ping()
            assert not any(cgroup.exists() for cgroup in left)
