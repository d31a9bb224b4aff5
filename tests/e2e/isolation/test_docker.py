"""The Docker containerizer on a real dockerd: limits, OOM, graceful kill, ports, GPUs, logs, bad specs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.request
import uuid
from typing import Any

import aio_pika
import docker
import pytest

from meseta.agent.containerizer import LABEL_CLUSTER, LABEL_TASK, DockerContainerizer, Launch
from meseta.runtime.defaults import TASK_IMAGE
from meseta.sdk import FrameworkClient, LogsUnavailable, wire
from meseta.sdk.wire import PortRange, Resources
from meseta.testing.local import local_cluster, next_event, run_one, short_task, terminal

pytestmark = pytest.mark.e2e

CGROUP_LIMITS = (
    # cgroup v1 paths, with the v2 ones as a fallback
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; "
    "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null "
    "|| cat /sys/fs/cgroup/cpu.max; "
    "cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu.weight"
)


async def state_of(
    client: FrameworkClient, task_id: str, wanted: wire.TaskState, timeout: float = 30
) -> None:
    """Wait for ``task_id`` to reach ``wanted``; a container start on a loaded dockerd can take seconds."""
    while True:
        update = await next_event(client, wire.Update, timeout)
        if update.status.task_id != task_id:
            continue
        if update.status.state == wanted:
            return
        assert not update.status.state.terminal, f"{task_id} ended before {wanted}: {update.status}"


async def test_limits_inside_the_container_equal_the_task_resources(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        client = await cluster.framework("limits")
        task = short_task("limits", cpus=0.5, mem=48, script=CGROUP_LIMITS)
        status = await run_one(client, task)
        assert status.state == wire.TaskState.FINISHED
        out = (await client.logs("limits")).stdout.split()
        if out[0] != "max" and len(out) == 4:  # cgroup v1: limit, quota, period, shares
            assert int(out[0]) == 48 * 1024 * 1024
            assert int(out[1]) / int(out[2]) == 0.5
            assert int(out[3]) == 512
        else:  # cgroup v2: memory.max, "quota period", weight
            assert int(out[0]) == 48 * 1024 * 1024 and int(out[1]) / int(out[2]) == 0.5


async def test_an_agent_may_declare_more_cpus_than_its_host_has(amqp_url: str, etcd_prefix: str) -> None:
    # Docker refuses nano_cpus over the host's cpu count ("Range of CPUs is from 0.01 to 2.00"): a task
    # bigger than the host failed at launch, and its framework was offered the same cpus again and again.
    declared = os.cpu_count() or 1
    agent = Resources(cpus=declared + 7, mem=1024)
    async with local_cluster(amqp_url, etcd_prefix, agents=1, resources=agent) as cluster:
        client = await cluster.framework("big")
        task = short_task("big", cpus=declared + 2, mem=32, script=CGROUP_LIMITS)
        status = await run_one(client, task)
        assert status.state == wire.TaskState.FINISHED, status
        out = (await client.logs("big")).stdout.split()
        # The quota holds the task to what it asked for (cgroup v1: limit, quota, period, shares).
        assert int(out[1]) / int(out[2]) == declared + 2


async def test_a_memory_hog_is_oom_killed_and_reported(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        client = await cluster.framework("hog")
        task = short_task("hog", mem=16, script="exec dd if=/dev/zero of=/dev/null bs=64M count=1")
        status = await run_one(client, task)
        assert status.state == wire.TaskState.FAILED
        assert status.reason == wire.StatusReason.OOM_KILLED
        assert "out of memory" in status.message


async def test_hogs_killed_at_once_are_each_reported_oom_killed() -> None:
    # Killed within milliseconds of starting, several at once: Docker's own flag misses some of these
    # (2 to 5 of 12 here), the kernel's log has them. Six: the kernel reports at most 10 OOM kills in 5 s,
    # and other tests of the suite kill a few too.
    containerizer = DockerContainerizer(f"test-{uuid.uuid4().hex[:10]}", "agent-hogs")
    hogs = [
        Launch(
            short_task(f"hog-{i}", mem=16, script="exec dd if=/dev/zero of=/dev/null bs=64M count=1"), "fw"
        )
        for i in range(6)
    ]
    ids = await asyncio.gather(*(containerizer.create(h) for h in hogs))
    try:
        await asyncio.gather(*(containerizer.start(i) for i in ids))
        exits = await asyncio.gather(*(containerizer.wait(i) for i in ids))
        assert [(e.code, e.oom_killed) for e in exits] == [(137, True)] * len(hogs)
    finally:
        await asyncio.gather(*(containerizer.remove(i) for i in ids))
        containerizer.close()


async def test_the_retention_sweep_inspects_only_containers_whose_end_it_did_not_see(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An agent keeps its exited containers for the retention; each sweep lists them once, and asks the
    engine when one ended only where the agent did not see it end (before a restart), and only once."""
    cluster = f"test-{uuid.uuid4().hex[:10]}"
    before_restart = DockerContainerizer(cluster, "agent-gc")
    containerizer = DockerContainerizer(cluster, "agent-gc")
    inspected: list[str] = []
    inspect = containerizer._client.api.inspect_container

    def counted(container_id: str) -> Any:
        inspected.append(container_id)
        return inspect(container_id)

    monkeypatch.setattr(containerizer._client.api, "inspect_container", counted)
    launches = [Launch(short_task(f"gc-{i}", script="true"), "fw") for i in range(4)]
    ids: list[str] = []
    try:
        ids = [await containerizer.create(launch) for launch in launches[:3]]
        unseen = await before_restart.create(launches[3])
        ids.append(unseen)
        for container_id in ids[:3]:
            await containerizer.start(container_id)
            await containerizer.wait(container_id)
        await before_restart.start(unseen)
        await before_restart.wait(unseen)
        inspected.clear()  # wait()'s own look at each exit
        assert await containerizer.collect_garbage(3600) == 0
        assert inspected == [unseen]
        assert await containerizer.collect_garbage(3600) == 0
        assert inspected == [unseen]
        assert await containerizer.collect_garbage(0) == 4
        assert inspected == [unseen]
        left = docker.from_env().containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={cluster}"})
        assert left == []
    finally:
        await asyncio.gather(*(containerizer.remove(i) for i in ids))
        containerizer.close()
        before_restart.close()


async def test_kill_sends_sigterm_then_sigkill_after_the_grace(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        client = await cluster.framework("stubborn")
        # Writes a marker on SIGTERM and keeps going: only SIGKILL ends it.
        script = "trap 'echo got-sigterm' TERM; echo ready; while true; do sleep 0.1; done"
        task = short_task("stubborn", script=script).model_copy(update={"kill_grace_seconds": 1.0})
        offer = (await next_event(client, wire.Offers)).offers[0]
        await client.accept([offer.offer_id], [task])
        await state_of(client, "stubborn", wire.TaskState.RUNNING)
        killed_at = time.monotonic()
        await client.kill("stubborn")
        status = await terminal(client, "stubborn")
        assert time.monotonic() - killed_at >= 1.0
        assert status.state == wire.TaskState.KILLED
        assert status.reason == wire.StatusReason.KILLED_BY_FRAMEWORK
        assert status.exit_code == 137  # SIGKILL
        assert (await client.logs("stubborn")).stdout.split() == ["ready", "got-sigterm"]


async def test_ports_are_mapped_and_never_shared(amqp_url: str, etcd_prefix: str) -> None:
    ports = Resources(cpus=2, mem=1024, ports=(PortRange(begin=31500, end=31501),))
    async with local_cluster(amqp_url, etcd_prefix, agent_resources=[ports]) as cluster:
        client = await cluster.framework("web")
        offer = (await next_event(client, wire.Offers)).offers[0]
        assert offer.resources.ports == (PortRange(begin=31500, end=31501),)

        def web(task_id: str, port: int) -> wire.TaskInfo:
            return wire.TaskInfo(
                task_id=task_id,
                resources=Resources(cpus=0.25, mem=32, ports=(PortRange(begin=port, end=port),)),
                container=wire.ContainerSpec.shell(
                    TASK_IMAGE,
                    "mkdir -p /www && echo hello-$PORT0 > /www/index.html && exec httpd -f -p $PORT0 -h /www",
                ),
            )

        # Two tasks on one port: refused, nothing launched.
        await client.accept([offer.offer_id], [web("w1", 31500), web("w2", 31500)])
        error = await next_event(client, wire.Error)
        assert error.code == wire.ErrorCode.INVALID_TASK and "same host port" in error.message
        # Each refused task ends in ERROR; then the id is free to launch again.
        ended = [(await next_event(client, wire.Update)).status for _ in range(2)]
        assert {(s.task_id, s.state) for s in ended} == {
            ("w1", wire.TaskState.ERROR),
            ("w2", wire.TaskState.ERROR),
        }
        await client.accept([offer.offer_id], [web("w1", 31500)])
        await state_of(client, "w1", wire.TaskState.RUNNING)

        def get() -> str:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with urllib.request.urlopen("http://127.0.0.1:31500/index.html", timeout=2) as response:
                        return response.read().decode().strip()
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

        assert await asyncio.to_thread(get) == "hello-31500"
        # The port in use is not offered again; the other one is.
        again = (await next_event(client, wire.Offers)).offers[0]
        assert again.resources.ports == (PortRange(begin=31501, end=31501),)
        await client.accept([again.offer_id], [web("w3", 31500)])
        assert (await next_event(client, wire.Error)).code == wire.ErrorCode.INSUFFICIENT_RESOURCES
        await client.kill("w1")
        assert (await terminal(client, "w1")).state == wire.TaskState.KILLED


async def test_gpu_ids_are_requested_exactly_and_withheld_until_the_task_ends(
    amqp_url: str, etcd_prefix: str
) -> None:
    gpu_agent = Resources(cpus=4, mem=2048, gpus=2)
    async with local_cluster(
        amqp_url, etcd_prefix, agent_resources=[gpu_agent], gpu_ids=[("0", "1")]
    ) as cluster:
        client = await cluster.framework("trainer")
        offer = (await next_event(client, wire.Offers)).offers[0]
        assert offer.gpu_ids == ("0", "1") and offer.resources.gpus == 2
        task = short_task(
            "train", script="echo gpus=$NVIDIA_VISIBLE_DEVICES/$MESETA_GPU_IDS; exec sleep 3600"
        )
        task = task.model_copy(update={"resources": Resources(cpus=1, mem=64, gpus=1)})
        await client.accept([offer.offer_id], [task])
        await state_of(client, "train", wire.TaskState.RUNNING)

        engine = docker.from_env()
        (container,) = engine.containers.list(
            filters={"label": [f"{LABEL_CLUSTER}={cluster.name}", f"{LABEL_TASK}=train"]}
        )
        requests = container.attrs["HostConfig"]["DeviceRequests"]
        assert [(r["DeviceIDs"], r["Capabilities"]) for r in requests] == [(["0"], [["gpu"]])]
        engine.close()
        assert (await client.logs("train")).stdout.strip() == "gpus=0/0"

        # The remainder comes back without the assigned GPU...
        rest = (await next_event(client, wire.Offers)).offers[0]
        assert rest.gpu_ids == ("1",) and rest.resources.gpus == 1
        await client.decline([rest.offer_id], refuse_seconds=0)
        # ...and once the task ends, both are offered again.
        await client.kill("train")
        await terminal(client, "train")
        while True:
            event = await next_event(client, wire.Offers)
            if event.offers[0].resources.gpus == 2:
                break
            await client.decline([o.offer_id for o in event.offers], refuse_seconds=0)
        assert event.offers[0].gpu_ids == ("0", "1")


async def test_logs_of_a_finished_task_are_retrievable(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        client = await cluster.framework("chatty")
        task = short_task("chatty", script="echo to-stdout; echo to-stderr >&2; exit 3")
        status = await run_one(client, task)
        assert (status.state, status.exit_code) == (wire.TaskState.FAILED, 3)
        logs = await client.logs("chatty")
        assert (logs.stdout, logs.stderr) == ("to-stdout\n", "to-stderr\n")
        # The CLI reads the same, by task id alone.
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "meseta.cli",
            "logs",
            "chatty",
            env={**os.environ, "MESETA_AMQP_URL": amqp_url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(cli.communicate(), 30)
        assert (cli.returncode, out, err) == (0, b"to-stdout\n", b"to-stderr\n")
        with pytest.raises(LogsUnavailable, match="UNKNOWN_TASK"):
            await client.logs("never-ran")


async def test_invalid_task_specs_get_errors_and_launch_nothing(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        client = await cluster.framework("sloppy")
        offer = (await next_event(client, wire.Offers)).offers[0]
        # GPU on a GPU-less agent, and a port outside the offer: refused by the master.
        gpu_task = short_task("gpu").model_copy(update={"resources": Resources(cpus=1, mem=32, gpus=1)})
        await client.accept([offer.offer_id], [gpu_task])
        assert (await next_event(client, wire.Error)).code == wire.ErrorCode.INSUFFICIENT_RESOURCES
        port_task = short_task("port").model_copy(
            update={"resources": Resources(cpus=1, mem=32, ports=(PortRange(begin=80, end=80),))}
        )
        await client.accept([offer.offer_id], [port_task])
        assert (await next_event(client, wire.Error)).code == wire.ErrorCode.INSUFFICIENT_RESOURCES
        # Zero cpus cannot even be built with the SDK; sent raw, the master answers INVALID_TASK.
        raw = json.loads(
            wire.encode(
                wire.Accept(
                    framework_id=client.framework_id or "",
                    offer_ids=(offer.offer_id,),
                    tasks=(short_task("zero"),),
                )
            )
        )
        raw["tasks"][0]["resources"]["cpus"] = 0
        connection = await aio_pika.connect(cluster.amqp_url)
        channel = await connection.channel()
        exchange = await channel.get_exchange(wire.Exchange.CALLS)
        await exchange.publish(aio_pika.Message(json.dumps(raw).encode()), routing_key=wire.RoutingKey.CALL)
        await connection.close()
        error = await next_event(client, wire.Error)
        assert error.code == wire.ErrorCode.INVALID_TASK and "cpus > 0" in error.message
        assert cluster.master.cluster.tasks == {}
        # An image the agent does not have and may not pull: TASK_ERROR, nothing runs. (Pulls, and a pull
        # that fails: tests/e2e/lifecycle/test_image_pulls.py, against this machine's registries.)
        spec = wire.ContainerSpec(image="meseta-no-such-image:1", command=("true",), pull="never")
        missing = short_task("no-image").model_copy(update={"container": spec})
        await client.accept([offer.offer_id], [missing])
        status = await terminal(client, "no-image")
        assert status.state == wire.TaskState.ERROR
        assert (
            status.reason == wire.StatusReason.CONTAINER_LAUNCH_FAILED
            and "not on this agent" in status.message
        )
