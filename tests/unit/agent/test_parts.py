"""The agent's parts with no broker and no Docker: dispatch, reliable status updates, the task runner."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from meseta.agent.checkpoint import Checkpoint
from meseta.agent.confinement import Confinement
from meseta.agent.handlers import HANDLERS
from meseta.agent.noop import NoopContainerizer
from meseta.agent.runner import TaskRunner
from meseta.agent.settings import AgentSettings
from meseta.agent.updates import StatusUpdater
from meseta.runtime.dispatch import check_coverage
from meseta.sdk import wire
from meseta.sdk.wire import Resources, TaskState
from meseta.testing.waiting import wait_for


class RecordingBus:
    def __init__(self) -> None:
        self.sent: list[wire.Message] = []

    async def publish(self, exchange: str, routing_key: str, message: wire.Message, **_: Any) -> None:
        await asyncio.sleep(0)
        self.sent.append(message)

    def states(self) -> list[tuple[str, TaskState]]:
        return [
            (u.status.task_id, u.status.state)
            for m in self.sent
            if isinstance(m, wire.StatusUpdates)
            for u in m.updates
        ]


def task(task_id: str) -> wire.TaskInfo:
    return wire.TaskInfo(
        task_id=task_id,
        resources=Resources(cpus=0.5, mem=32),
        container=wire.ContainerSpec.shell("meseta-task:latest", "true"),
    )


def test_the_dispatch_table_covers_the_agent_s_channel() -> None:
    check_coverage("agent", HANDLERS, (wire.LAUNCHES,))
    with pytest.raises(ValueError, match="no agent handler for \\['KillTask'\\]"):
        check_coverage(
            "agent", {k: v for k, v in HANDLERS.items() if k is not wire.KillTask}, (wire.LAUNCHES,)
        )


async def test_updates_are_resent_until_acknowledged_and_survive_a_restart(tmp_path: Path) -> None:
    bus = RecordingBus()
    checkpoint = Checkpoint(tmp_path / "a1")
    updater = StatusUpdater("a1", bus, checkpoint, retry_interval=0.3)  # type: ignore[arg-type]
    retries = asyncio.create_task(updater.retry_loop())
    try:
        status = wire.TaskStatus(task_id="t1", state=TaskState.RUNNING, agent_id="a1")
        await updater.send("fw", status)
        await wait_for(lambda: bus.states() == [("t1", TaskState.RUNNING)], 5, "the first send")
        await wait_for(lambda: updater.resent >= 1 and len(bus.states()) >= 2, 5, "a resend")
        assert all(isinstance(m, wire.StatusUpdates) for m in bus.sent)  # a batch of one is a batch

        # A restarted agent finds the update in its checkpoint, due at once.
        again = StatusUpdater("a1", bus, Checkpoint(tmp_path / "a1"), retry_interval=0.3)  # type: ignore[arg-type]
        again.recover()
        assert list(again.unacknowledged) == [status.uuid]

        updater.acknowledged((status.uuid,))
        assert not updater.unacknowledged and not checkpoint.updates()  # nothing left to resend
    finally:
        retries.cancel()


def test_an_update_checkpointed_by_a_protocol_1_agent_still_loads(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "a1")
    status = wire.TaskStatus(task_id="t1", state=TaskState.FINISHED, agent_id="a1")
    v1 = {
        "type": "STATUS_UPDATE",
        "version": 1,
        "message_id": "m1",
        "correlation_id": None,
        "agent_id": "a1",
        "framework_id": "fw",
        "status": json.loads(status.model_dump_json()),
        "trace": {},
    }
    (checkpoint.updates_dir / f"{status.uuid}.json").write_text(json.dumps(v1))
    (loaded,) = checkpoint.updates()
    assert loaded.status == status and loaded.framework_id == "fw"


async def test_the_runner_runs_kills_and_refuses_what_is_not_there(tmp_path: Path) -> None:
    bus = RecordingBus()
    settings = AgentSettings(amqp_url="amqp://unused", resources=Resources(cpus=4, mem=1024), agent_id="a1")
    checkpoint = Checkpoint(tmp_path / "a1")
    updater = StatusUpdater("a1", bus, checkpoint, retry_interval=60)  # type: ignore[arg-type]
    runner = TaskRunner(settings, NoopContainerizer(seconds=0.2), updater, checkpoint, bus, Confinement())  # type: ignore[arg-type]
    try:
        launch = wire.LaunchTasks(agent_id="a1", framework_id="fw", tasks=(task("quick"), task("long")))
        await runner.launch(launch)
        await runner.launch(launch)  # a redelivered launch starts nothing twice
        assert runner.used() == Resources(cpus=1, mem=64)
        await wait_for(lambda: ("long", TaskState.RUNNING) in bus.states(), 5, "long to run")
        await runner.kill(wire.KillTask(agent_id="a1", framework_id="fw", task_id="long"))
        await runner.kill(wire.KillTask(agent_id="a1", framework_id="fw", task_id="nope"))
        ended = {("quick", TaskState.FINISHED), ("long", TaskState.KILLED), ("nope", TaskState.LOST)}
        await wait_for(lambda: ended <= set(bus.states()), 5, "both tasks to end, and the unknown one")
        assert not runner.tasks
        states = bus.states()
        assert [s for t, s in states if t == "quick"] == [
            TaskState.STARTING,
            TaskState.RUNNING,
            TaskState.FINISHED,
        ]
        assert [s for t, s in states if t == "long"] == [
            TaskState.STARTING,
            TaskState.RUNNING,
            TaskState.KILLING,
            TaskState.KILLED,
        ]
        assert ("nope", TaskState.LOST) in states
        assert not checkpoint.tasks()  # ended tasks leave no checkpoint
    finally:
        await runner.stop()
