"""A task's container cannot reach its host: host paths only from the agent's allow-list, no new
privileges, a small set of capabilities, bounded processes and logs. Real dockerd."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from meseta.agent.containerizer import LABEL_CLUSTER, LABEL_TASK
from meseta.sdk import wire
from meseta.sdk.wire import Mount
from meseta.testing.local import local_cluster, next_event, run_one, short_task, terminal

pytestmark = pytest.mark.e2e

CAP_MASK = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 10)
"""CHOWN, DAC_OVERRIDE, FOWNER, KILL, SETGID, SETUID, NET_BIND_SERVICE: meseta.agent.confinement."""


def mounting(task_id: str, host_path: str, read_only: bool = True, script: str = "true") -> wire.TaskInfo:
    task = short_task(task_id, script=script)
    spec = task.container.model_copy(
        update={"mounts": (Mount(host_path=host_path, container_path="/mnt/x", read_only=read_only),)}
    )
    return task.model_copy(update={"container": spec})


async def test_host_mounts_outside_the_allow_list_are_refused(
    amqp_url: str, etcd_prefix: str, tmp_path: Path
) -> None:
    allowed = tmp_path / "shared"
    allowed.mkdir()
    (allowed / "data.txt").write_text("from the host\n")
    # Short offers: whatever the victim was offered and never answered comes back to the pool soon.
    mounts = (str(allowed),)
    async with local_cluster(
        amqp_url, etcd_prefix, agents=1, allowed_mounts=mounts, offer_timeout=3
    ) as cluster:
        victim = await cluster.framework("victim")
        offer = (await next_event(victim, wire.Offers)).offers[0]
        await victim.accept([offer.offer_id], [short_task("keeps-running", script="sleep 600")])
        await victim.suppress()  # the rest of the agent is the attacker's to be offered
        while (await next_event(victim, wire.Update)).status.state != wire.TaskState.RUNNING:
            pass

        attacker = await cluster.framework("attacker")
        attacks = [
            mounting("docker-socket", "/var/run/docker.sock", read_only=False),
            mounting("root", "/"),
            mounting("climbs-out", f"{allowed}/../../../etc"),
            mounting("writes-allowed", str(allowed), read_only=False),  # allowed read-only only
        ]
        for task in attacks:
            status = await run_one(attacker, task)
            assert (status.state, status.reason) == (wire.TaskState.ERROR, wire.StatusReason.INVALID_TASK), (
                status
            )
            assert "is not allowed on this agent" in status.message
        allowed_read = mounting("reads-allowed", str(allowed), script="cat /mnt/x/data.txt")
        assert (await run_one(attacker, allowed_read)).state == wire.TaskState.FINISHED
        assert (await attacker.logs("reads-allowed")).stdout == "from the host\n"

        # The victim's task ran on throughout, and the agent still serves it.
        assert (victim.framework_id, "keeps-running") in cluster.agents[0].tasks
        await victim.kill("keeps-running")
        assert (await terminal(victim, "keeps-running")).state == wire.TaskState.KILLED


async def test_a_task_gains_no_privileges_and_keeps_few_capabilities(amqp_url: str, etcd_prefix: str) -> None:
    script = (
        "grep -E '^(NoNewPrivs|CapEff|CapBnd):' /proc/self/status; "
        "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"
    )
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        client = await cluster.framework("inspector")
        status = await run_one(client, short_task("inspect", script=script))
        assert status.state == wire.TaskState.FINISHED, status
        lines = dict(line.split(":\t") for line in (await client.logs("inspect")).stdout.splitlines()[:3])
        assert lines["NoNewPrivs"] == "1"
        assert int(lines["CapEff"], 16) == CAP_MASK and int(lines["CapBnd"], 16) == CAP_MASK
        assert (await client.logs("inspect")).stdout.splitlines()[3] == "4096"
        engine = docker.from_env()
        labels = [f"{LABEL_CLUSTER}={cluster.name}", f"{LABEL_TASK}=inspect"]
        (container,) = engine.containers.list(all=True, filters={"label": labels})
        host = container.attrs["HostConfig"]
        assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
        assert host["PidsLimit"] == 4096 and host["CapDrop"] == ["ALL"]
        engine.close()


async def test_tasks_run_as_a_user_other_than_root(amqp_url: str, etcd_prefix: str) -> None:
    # Before, every task ran as its image's user: root in the busybox image and most others.
    async with local_cluster(amqp_url, etcd_prefix, agents=1, task_user="4242") as cluster:
        client = await cluster.framework("users")
        own = short_task("own-user", script="id -u; id -g")
        own = own.model_copy(update={"container": own.container.model_copy(update={"user": "1000:1001"})})
        assert (await run_one(client, own)).state == wire.TaskState.FINISHED
        assert (await client.logs("own-user")).stdout.split() == ["1000", "1001"]
        # A task that names none runs as the agent's --task-user.
        assert (await run_one(client, short_task("default-user", script="id -u"))).state == (
            wire.TaskState.FINISHED
        )
        assert (await client.logs("default-user")).stdout.split() == ["4242"]
    with pytest.raises(ValueError, match="String should match pattern"):
        wire.ContainerSpec(image="x", user="root")  # numeric only: an image need not know the name
