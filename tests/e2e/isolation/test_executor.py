"""Custom executors on a real dockerd: one container runs many tasks; its death fails the unfinished ones.

No registry is reachable, so the executor image is the busybox task image with the host's Python, its
libraries and this repository (with its .venv) mounted read-only: ``python -m meseta.sdk.executor`` runs
the SDK's CommandExecutor inside it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from pathlib import Path

import docker
import pytest

from meseta.agent.containerizer import LABEL_CLUSTER, LABEL_TASK
from meseta.runtime.defaults import TASK_IMAGE
from meseta.sdk import wire
from meseta.sdk.bus import user_of
from meseta.sdk.wire import ContainerSpec, ExecutorInfo, Mount, Resources
from meseta.testing.local import local_cluster, next_event, short_task

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[3]
HOST_PATHS = ["/lib", "/lib64", "/usr/lib", sys.base_prefix, str(REPO)]
MOUNTED = tuple(HOST_PATHS)
"""The agent's allow-list (--allow-mount): the executor runs this checkout's Python from the host."""


def command_executor(executor_id: str) -> ExecutorInfo:
    mounts = tuple(Mount(host_path=p, container_path=p) for p in HOST_PATHS if Path(p).exists())
    python = str(REPO / ".venv" / "bin" / "python")
    container = ContainerSpec(image=TASK_IMAGE, command=(python, "-m", "meseta.sdk.executor"), mounts=mounts)
    return ExecutorInfo(executor_id=executor_id, container=container, resources=Resources(cpus=0.2, mem=128))


def executor_task(task_id: str, executor: ExecutorInfo, script: str) -> wire.TaskInfo:
    return short_task(task_id, cpus=0.1, mem=16, script=script).model_copy(update={"executor": executor})


def executor_containers(cluster_name: str, executor_task_id: str) -> list[str]:
    engine = docker.from_env()
    labels = [f"{LABEL_CLUSTER}={cluster_name}", f"{LABEL_TASK}={executor_task_id}"]
    found = [str(c.id) for c in engine.containers.list(all=True, filters={"label": labels})]
    engine.close()
    return found


@pytest.mark.parametrize("principals", [None, ["alice"]], ids=["development", "principals"])
async def test_one_executor_runs_five_tasks(
    amqp_url: str, etcd_prefix: str, principals: list[str] | None
) -> None:
    # With principals the executor logs in as its agent's executors' user, never the agent's: its queue
    # is declared by the master, and the agent takes its updates only from that user.
    async with local_cluster(
        amqp_url, etcd_prefix, agents=1, allowed_mounts=MOUNTED, principals=principals
    ) as cluster:
        client = await cluster.framework("with-executor")
        executor = command_executor("runner")
        offer = (await next_event(client, wire.Offers)).offers[0]
        tasks = [executor_task(f"ex-{i}", executor, f"echo task {i}; sleep 0.2") for i in range(5)]
        await client.accept([offer.offer_id], tasks)

        statuses: dict[str, list[wire.TaskStatus]] = {}
        while len([t for t, s in statuses.items() if s[-1].state.terminal and t.startswith("ex-")]) < 5:
            update = await next_event(client, wire.Update, timeout=60)
            statuses.setdefault(update.status.task_id, []).append(update.status)
        for i in range(5):
            states = [s.state for s in statuses[f"ex-{i}"]]
            assert states == [wire.TaskState.STARTING, wire.TaskState.RUNNING, wire.TaskState.FINISHED]
            assert statuses[f"ex-{i}"][1].message.startswith("pid ")  # RUNNING came from the executor
        executor_id = wire.executor_task_id("runner", cluster.agents[0].agent_id)
        (container_id,) = executor_containers(cluster.name, executor_id)
        if principals is not None:
            engine = docker.from_env()
            env = dict(e.split("=", 1) for e in engine.containers.get(container_id).attrs["Config"]["Env"])
            engine.close()
            given = user_of(env["MESETA_AMQP_URL"])
            assert given == cluster.principals.executors(cluster.agents[0].agent_id)
        # Idle, the executor is shut down; its own resources come back to the pool.
        while not (executor_id in statuses and statuses[executor_id][-1].state.terminal):
            update = await next_event(client, wire.Update, timeout=30)
            statuses.setdefault(update.status.task_id, []).append(update.status)
        assert statuses[executor_id][-1].state == wire.TaskState.FINISHED
        assert cluster.master.cluster.tasks == {}


def _bridge_gateway() -> str:
    """The host's address on Docker's bridge. The daemon does not always list it (after a restart its
    IPAM config may hold the subnet alone): then it is the subnet's first address, as Docker assigns it."""
    engine = docker.from_env()
    try:
        config = engine.networks.get("bridge").attrs["IPAM"]["Config"][0]
    finally:
        engine.close()
    if config.get("Gateway"):
        return str(config["Gateway"])
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


async def test_an_executor_on_a_network_of_its_own(amqp_url: str, etcd_prefix: str) -> None:
    # Executors used to share the host's network, always. With --executor-network bridge one runs on
    # Docker's bridge and reaches the broker at the bridge's gateway, as its executors' principal (guest
    # may only log in from the loopback, so a development cluster's executors cannot).
    async with local_cluster(
        amqp_url,
        etcd_prefix,
        agents=1,
        allowed_mounts=MOUNTED,
        principals=["alice"],
        executor_network="bridge",
        executor_host=await asyncio.to_thread(_bridge_gateway),
    ) as cluster:
        client = await cluster.framework("bridged")
        executor = command_executor("bridged")
        offer = (await next_event(client, wire.Offers)).offers[0]
        await client.accept([offer.offer_id], [executor_task("b-1", executor, "echo bridged")])
        status = None
        while status is None or status.task_id != "b-1" or not status.state.terminal:
            status = (await next_event(client, wire.Update, timeout=60)).status
        assert status.state == wire.TaskState.FINISHED, status
        executor_id = wire.executor_task_id("bridged", cluster.agents[0].agent_id)
        (container_id,) = executor_containers(cluster.name, executor_id)
        engine = docker.from_env()
        mode = engine.containers.get(container_id).attrs["HostConfig"]["NetworkMode"]
        engine.close()
        assert mode in ("default", "bridge"), mode


async def test_a_dead_executor_fails_its_unfinished_tasks(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1, allowed_mounts=MOUNTED) as cluster:
        client = await cluster.framework("fragile")
        executor = command_executor("fragile")
        offer = (await next_event(client, wire.Offers)).offers[0]
        await client.accept(
            [offer.offer_id],
            [executor_task("quick", executor, "true")]
            + [executor_task(f"long-{i}", executor, "while true; do sleep 0.1; done") for i in range(3)],
        )
        running: set[str] = set()
        finished: set[str] = set()
        while len(running) < 3 or not finished:
            update = await next_event(client, wire.Update, timeout=60)
            if update.status.state == wire.TaskState.RUNNING and update.status.task_id.startswith("long-"):
                running.add(update.status.task_id)
            if update.status.state == wire.TaskState.FINISHED:
                finished.add(update.status.task_id)
        assert finished == {"quick"}

        executor_id = wire.executor_task_id("fragile", cluster.agents[0].agent_id)
        (container_id,) = executor_containers(cluster.name, executor_id)
        engine = docker.from_env()
        engine.containers.get(container_id).kill()
        engine.close()

        failed: dict[str, wire.TaskStatus] = {}
        while len(failed) < 3:
            update = await next_event(client, wire.Update, timeout=30)
            if update.status.task_id.startswith("long-"):
                assert update.status.state.terminal, update.status
                failed[update.status.task_id] = update.status
        assert {s.state for s in failed.values()} == {wire.TaskState.FAILED}
        assert {s.reason for s in failed.values()} == {wire.StatusReason.EXECUTOR_TERMINATED}
