"""An agent's share of the tenant boundaries, with no broker and no Docker: an acknowledgement erases only
its own framework's updates, and a framework that leaves too many unacknowledged has its launches refused."""

from __future__ import annotations

from pathlib import Path

from meseta.agent.checkpoint import Checkpoint
from meseta.agent.confinement import Confinement
from meseta.agent.noop import NoopContainerizer
from meseta.agent.runner import TaskRunner
from meseta.agent.settings import AgentSettings
from meseta.agent.updates import StatusUpdater
from meseta.sdk import wire
from meseta.sdk.wire import Resources, TaskState
from meseta.testing.waiting import wait_for
from tests.unit.agent.test_parts import RecordingBus, task


def status(task_id: str, state: TaskState = TaskState.FINISHED) -> wire.TaskStatus:
    return wire.TaskStatus(task_id=task_id, state=state, agent_id="a1")


async def test_an_acknowledgement_erases_only_its_own_framework_s_updates(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "a1")
    updater = StatusUpdater("a1", RecordingBus(), checkpoint, retry_interval=60)  # type: ignore[arg-type]
    mine, theirs = status("mine"), status("theirs")
    await updater.send("alice", mine)
    await updater.send("bob", theirs)
    # Alice acknowledges bob's update as well as her own (she saw its uuid somewhere).
    updater.acknowledged((mine.uuid, theirs.uuid), "alice")
    assert set(updater.unacknowledged) == {theirs.uuid}
    assert [u.status.uuid for u in checkpoint.updates()] == [theirs.uuid]
    assert dict(updater.pending) == {"bob": 1}
    updater.acknowledged((theirs.uuid,), "bob")
    assert not updater.unacknowledged and not checkpoint.updates() and not updater.pending


async def test_a_framework_over_its_cap_of_unacknowledged_updates_has_its_launches_refused(
    tmp_path: Path,
) -> None:
    bus = RecordingBus()
    settings = AgentSettings(amqp_url="amqp://unused", resources=Resources(cpus=4, mem=1024), agent_id="a1")
    checkpoint = Checkpoint(tmp_path / "a1")
    updater = StatusUpdater("a1", bus, checkpoint, retry_interval=60, max_unacknowledged=3)  # type: ignore[arg-type]
    runner = TaskRunner(settings, NoopContainerizer(seconds=0), updater, checkpoint, bus, Confinement())  # type: ignore[arg-type]
    try:
        # One task: STARTING, RUNNING, FINISHED, none acknowledged: three, the cap.
        await runner.launch(wire.LaunchTasks(agent_id="a1", framework_id="hoarder", tasks=(task("t1"),)))
        await wait_for(lambda: ("t1", TaskState.FINISHED) in bus.states(), 5, "t1 to finish")
        assert updater.over_cap("hoarder") and not updater.over_cap("polite")
        await runner.launch(wire.LaunchTasks(agent_id="a1", framework_id="hoarder", tasks=(task("t2"),)))
        await runner.launch(wire.LaunchTasks(agent_id="a1", framework_id="polite", tasks=(task("p1"),)))
        await wait_for(lambda: ("t2", TaskState.ERROR) in bus.states(), 5, "t2 to be refused")
        await wait_for(lambda: ("p1", TaskState.FINISHED) in bus.states(), 5, "another framework's task")
        refusal = next(
            u.status
            for m in bus.sent
            if isinstance(m, wire.StatusUpdates)
            for u in m.updates
            if u.status.task_id == "t2"
        )
        assert (
            refusal.reason == wire.StatusReason.TOO_MANY_UNACKNOWLEDGED and "acknowledge" in refusal.message
        )
        # The refusal itself is not kept (it would grow what the cap bounds), and nothing of t2 ran.
        assert updater.pending["hoarder"] == 3 and [s for t, s in bus.states() if t == "t2"] == [
            TaskState.ERROR
        ]
        # Acknowledged, it launches again.
        updater.acknowledged(tuple(updater.unacknowledged), "hoarder")
        await runner.launch(wire.LaunchTasks(agent_id="a1", framework_id="hoarder", tasks=(task("t3"),)))
        await wait_for(lambda: ("t3", TaskState.FINISHED) in bus.states(), 5, "t3 to finish")
    finally:
        await runner.stop()
