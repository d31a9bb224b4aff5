"""Partition awareness on real processes: the agent stopped with SIGSTOP (its heartbeats blocked, its
containers running on) for less, then for more, than the master's unreachable timeout."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import pytest

from meseta.agent.containerizer import LABEL_CLUSTER, LABEL_TASK
from meseta.sdk import FrameworkClient
from meseta.sdk.wire import StatusReason, TaskState
from meseta.testing.local import short_task
from meseta.testing.processes import ProcessCluster, quick_failures
from meseta.testing.watcher import TaskWatcher

pytestmark = [pytest.mark.e2e, pytest.mark.serial, pytest.mark.timeout(300)]

UNREACHABLE_TIMEOUT = 8.0
FAST = quick_failures(UNREACHABLE_TIMEOUT)


@pytest.fixture
async def procs(infrastructure: None, tmp_path: Path) -> AsyncIterator[ProcessCluster]:
    async with ProcessCluster(tmp_path, env=FAST) as cluster:
        await cluster.allocator(0)
        await cluster.master(0)
        await cluster.agent(0, "host-0", "--cpus=2", "--mem=1024")
        yield cluster


def container(run_id: str, task_id: str) -> tuple[str, bool, str] | None:
    """(id, running, started at) of the task's container, if there is one."""
    client = docker.from_env()
    try:
        labels = [f"{LABEL_CLUSTER}={run_id}", f"{LABEL_TASK}={task_id}"]
        found = client.containers.list(all=True, filters={"label": labels})
        if not found:
            return None
        (c,) = found  # one container per task: never a second start
        return str(c.id), c.status == "running", str(c.attrs["State"]["StartedAt"])
    finally:
        client.close()


async def running(run_id: str, task_id: str) -> tuple[str, bool, str] | None:
    return await asyncio.to_thread(container, run_id, task_id)


async def test_unreachable_then_running_again_then_gone(procs: ProcessCluster) -> None:
    agent = procs.procs["agent-0"]
    aware = FrameworkClient(procs.amqp_url, "aware", partition_aware=True)
    plain = FrameworkClient(procs.amqp_url, "plain")
    await aware.subscribe(timeout=30)
    await plain.subscribe(timeout=30)
    try:
        async with TaskWatcher(aware) as a, TaskWatcher(plain) as p:
            await a.launch(short_task("svc", cpus=0.2, script="sleep 600"))
            await p.launch(short_task("batch", cpus=0.2, script="sleep 600"))
            await a.until_state("svc", TaskState.RUNNING, 60)
            await p.until_state("batch", TaskState.RUNNING, 60)
            before = await running(procs.run_id, "svc")
            assert before is not None and before[1]

            # Reconciliation of a task the master never heard of: UNKNOWN if partition-aware, else LOST.
            await aware.reconcile(["never-launched"])
            await plain.reconcile(["never-launched"])
            assert (
                await a.until("never-launched", lambda s: True, 10, "an answer")
            ).state == TaskState.UNKNOWN
            assert (await p.until("never-launched", lambda s: True, 10, "an answer")).state == TaskState.LOST

            # Silent for longer than the agent timeout, back well within the unreachable timeout.
            agent.send_signal(signal.SIGSTOP)
            try:
                unreachable = await a.until_state("svc", TaskState.UNREACHABLE, 15)
                assert unreachable.reason == StatusReason.AGENT_UNREACHABLE
                lost = await p.until_state("batch", TaskState.LOST, 15)
                assert lost.reason == StatusReason.AGENT_REMOVED
            finally:
                agent.send_signal(signal.SIGCONT)
            back = await a.until(
                "svc", lambda s: s.reason == StatusReason.AGENT_REREGISTERED, 20, "RUNNING again"
            )
            assert back.state == TaskState.RUNNING and back.timestamp > unreachable.timestamp
            assert back.timestamp - unreachable.timestamp < UNREACHABLE_TIMEOUT
            after = await running(procs.run_id, "svc")
            assert after == before  # the same container, still running: never restarted
            # The task a plain framework was told is LOST does not run on behind its back.
            await wait_until_stopped(procs.run_id, "batch")
            assert TaskState.GONE not in a.states("svc")

            # Silent past the unreachable timeout: GONE, and killed when the agent returns.
            agent.send_signal(signal.SIGSTOP)
            try:
                gone = await a.until_state("svc", TaskState.GONE, 15 + UNREACHABLE_TIMEOUT)
                assert gone.reason == StatusReason.AGENT_UNREACHABLE and "GONE" in gone.message
                assert len([s for s in a.states("svc") if s == TaskState.UNREACHABLE]) == 2
            finally:
                agent.send_signal(signal.SIGCONT)
            await wait_until_stopped(procs.run_id, "svc")
            assert (await running(procs.run_id, "svc")) is not None  # the one container, ended
    finally:
        await aware.close()
        await plain.close()


async def wait_until_stopped(run_id: str, task_id: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        found = await running(run_id, task_id)
        if found is None or not found[1]:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{task_id}'s container still runs {timeout} s after its agent came back")
