"""The no-op container runtime (emulated agents, ``--isolator noop``): exits, kills, removal."""

from __future__ import annotations

import asyncio

from meseta.agent.containerizer import Exit, Launch
from meseta.agent.noop import DURATION_ENV, NoopContainerizer
from meseta.sdk import wire


def launch(seconds: float) -> Launch:
    task = wire.TaskInfo(
        task_id="t1",
        resources=wire.Resources(cpus=1, mem=32),
        container=wire.ContainerSpec(image="noop", env={DURATION_ENV: f"{seconds:g}"}),
    )
    return Launch(task=task, framework_id="fw")


async def test_a_container_exits_zero_after_its_duration() -> None:
    runtime = NoopContainerizer()
    cid = await runtime.create(launch(0.05))
    await runtime.start(cid)
    assert await asyncio.wait_for(runtime.wait(cid), 5) == Exit(0, oom_killed=False)
    assert await runtime.find("fw", "t1") == cid
    assert await runtime.collect_garbage(0) == 1


async def test_stop_ends_it_as_sigterm_and_a_cancelled_waiter_changes_nothing() -> None:
    runtime = NoopContainerizer()
    cid = await runtime.create(launch(3600))
    await runtime.start(cid)
    waiter = asyncio.create_task(runtime.wait(cid))
    await asyncio.sleep(0)
    waiter.cancel()  # the agent stopping: the container itself keeps running
    await runtime.stop(cid, grace_seconds=1)
    assert await asyncio.wait_for(runtime.wait(cid), 5) == Exit(143, oom_killed=False)


async def test_removing_a_container_releases_its_waiter() -> None:
    runtime = NoopContainerizer()
    cid = await runtime.create(launch(3600))
    await runtime.start(cid)
    waiter = asyncio.create_task(runtime.wait(cid))
    await asyncio.sleep(0)
    await runtime.remove(cid)
    assert (await asyncio.wait_for(waiter, 5)).code == 143
    runtime.close()
