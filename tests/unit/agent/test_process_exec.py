"""Command checks under the process isolator run inside their task's limits, as Mesos runs them inside
the task's container: a check must not use memory or cpu that nobody was offered."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meseta.agent.containerizer import Launch
from meseta.agent.process import ProcessContainerizer, cgroups_writable
from meseta.sdk import wire

TASK_MIB = 128


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[ProcessContainerizer, str]]:
    """A process isolator of its own (its own agent id, so its own cgroups) with one long task running."""
    containerizer = ProcessContainerizer(f"exec-test-{uuid.uuid4().hex[:8]}", tmp_path)
    await containerizer.ping()
    task = wire.TaskInfo(
        task_id="sleeper",
        name="sleeper",
        resources=wire.Resources(cpus=0.5, mem=TASK_MIB),
        container=wire.ContainerSpec(image="ignored", command=("sleep", "60")),
    )
    container_id = await containerizer.create(Launch(task=task, framework_id="fw"))
    await containerizer.start(container_id)
    try:
        yield containerizer, container_id
    finally:
        await containerizer.stop(container_id, 0.1, "SIGKILL")
        await containerizer.wait(container_id)
        containerizer.close()


async def test_a_command_check_runs_in_the_tasks_cgroups_or_rlimit(
    running: tuple[ProcessContainerizer, str], tmp_path: Path
) -> None:
    containerizer, container_id = running
    seen = tmp_path / "seen"
    code = await containerizer.exec(
        container_id, ("/bin/sh", "-c", f'cat /proc/self/cgroup > "{seen}"; ulimit -v >> "{seen}"')
    )
    assert code == 0
    lines = seen.read_text().splitlines()
    if cgroups_writable():
        memory = next(line for line in lines if ":memory:" in line)
        assert memory.endswith(f"/meseta/{containerizer.agent_id}/{container_id}")
    else:
        assert lines[-1] == str(TASK_MIB * 1024)


async def test_a_command_check_cannot_use_more_memory_than_its_task(
    running: tuple[ProcessContainerizer, str],
) -> None:
    containerizer, container_id = running
    fits = (sys.executable, "-c", "b = bytearray(8 << 20)")
    assert await containerizer.exec(container_id, fits) == 0
    too_much = (sys.executable, "-c", f"b = bytearray({2 * TASK_MIB} << 20)")
    assert await containerizer.exec(container_id, too_much) != 0


async def test_a_command_checks_exit_codes_are_the_shells(running: tuple[ProcessContainerizer, str]) -> None:
    containerizer, container_id = running
    assert await containerizer.exec(container_id, ("no-such-check-command",)) == 127
    assert await containerizer.exec(container_id, ("/bin/sh", "-c", "exit 3")) == 3
    assert await containerizer.exec(container_id, ("/bin/sh", "-c", "kill -9 $$")) == 128 + 9
