"""Draining an agent and maintenance windows, on the master's handlers alone."""

from __future__ import annotations

import time

from meseta.master import agents, draining
from meseta.master.cluster import Window
from meseta.sdk import wire
from meseta.sdk.wire import Resources
from tests.unit.master.fakes import FakeMaster, of

CPU2 = Resources(cpus=2, mem=128)


def task(task_id: str, cpus: float) -> wire.TaskInfo:
    return wire.TaskInfo(
        task_id=task_id,
        resources=Resources(cpus=cpus, mem=64),
        container=wire.ContainerSpec.shell("meseta-task:latest", "sleep 600"),
    )


async def launched(master: FakeMaster, *tasks: wire.TaskInfo) -> str:
    """An agent a1, a framework, and ``tasks`` launched on an offer of 2 cpus there: the framework's id."""
    await master.agent("a1")
    fw, secret = await master.framework()
    offer = await master.offer(fw, "a1", CPU2)
    await master.handle(wire.Accept(framework_id=fw, secret=secret, offer_ids=(offer.offer_id,), tasks=tasks))
    return fw


async def test_a_drain_stops_offers_tells_the_framework_and_kills_at_the_deadline() -> None:
    master = FakeMaster()
    fw = await launched(master, task("t1", cpus=0.5))
    spare = await master.offer(fw, "a1", Resources(cpus=1, mem=64))
    master.publisher.take()
    await draining.drain(master.core, "a1", deadline_seconds=60)
    sent = master.publisher.take()
    assert [(a.agent_id, a.available) for a in of(sent, wire.AgentAvailability)] == [("a1", False)]
    assert [r.offer_id for r in of(sent, wire.Rescind)] == [spare.offer_id]
    (notice,) = of(sent, wire.DrainNotice)
    assert (notice.framework_id, notice.task_ids) == (fw, ("t1",))
    assert master.registry.drains["a1"]["deadline"] == notice.deadline  # kept before anyone was told
    assert draining.state_of(master.cluster, "a1") == "DRAINING"
    # A grant made before the allocator heard of it goes back, not out.
    sent = await master.handle(
        wire.Allocations(grants=(wire.Grant(framework_id=fw, agent_id="a1", resources=CPU2),))
    )
    assert not of(sent, wire.Offers)
    # Before the deadline nothing is killed; after it, the task is (AGENT_DRAINED), once.
    await draining.sweep(master.core)
    assert not of(master.publisher.take(), wire.KillTask)
    master.cluster.drains["a1"] = draining.Drain(since=time.time() - 61, deadline=time.time() - 1)
    await draining.sweep(master.core)
    await draining.sweep(master.core)
    (kill,) = of(master.publisher.take(), wire.KillTask)
    assert (kill.task_id, kill.reason) == ("t1", wire.StatusReason.AGENT_DRAINED)
    # The STATE_SYNC a new allocator gets keeps the agent unavailable.
    ((agent,),) = [part.agents for part in master.cluster.state_sync()]
    assert agent.unavailable
    assert await draining.undrain(master.core, "a1")
    assert [a.available for a in of(master.publisher.take(), wire.AgentAvailability)] == [True]
    assert "a1" not in master.registry.drains
    assert not await draining.undrain(master.core, "a1")
    assert not of(master.publisher.take(), wire.Updates)


async def test_a_window_drains_its_agents_from_its_start_to_its_end() -> None:
    master = FakeMaster()
    await master.agent("a1")
    now = time.time()
    await draining.schedule(master.core, Window("w1", ("a1",), start=now + 60, end=now + 120))
    await draining.sweep(master.core)
    assert draining.state_of(master.cluster, "a1") == "ACTIVE"  # not yet
    master.cluster.maintenance["w1"] = Window("w1", ("a1",), start=now - 1, end=now + 60)
    await draining.sweep(master.core)
    assert draining.state_of(master.cluster, "a1") == "DRAINED"
    assert master.cluster.drains["a1"].window == "w1"
    master.cluster.maintenance["w1"] = Window("w1", ("a1",), start=now - 60, end=now - 1)
    await draining.sweep(master.core)
    assert draining.state_of(master.cluster, "a1") == "ACTIVE"
    assert master.cluster.maintenance == {} and master.registry.windows == {}


async def test_a_drain_whose_window_is_gone_ends_with_it() -> None:
    # A window cancelled while a sweep was draining its agents left their drains behind for ever.
    master = FakeMaster()
    await master.agent("a1")
    await draining.drain(master.core, "a1", deadline_seconds=0, window="w-gone")
    await draining.drain(master.core, "a2", deadline_seconds=0)  # an operator's: kept
    await draining.sweep(master.core)
    assert draining.state_of(master.cluster, "a1") == "ACTIVE"
    assert "a2" in master.cluster.drains


async def test_an_agent_marked_gone_loses_its_tasks_and_is_never_taken_back() -> None:
    master = FakeMaster()
    fw = await launched(master, task("t1", cpus=0.5))
    master.publisher.take()
    assert await agents.mark_gone(master.core, "a1")
    sent = master.publisher.take()
    lost = [s for u in of(sent, wire.Updates) for s in u.statuses]
    assert [(s.task_id, s.state, s.reason) for s in lost] == [
        ("t1", wire.TaskState.LOST, wire.StatusReason.AGENT_REMOVED)
    ]
    assert "a1" not in master.cluster.agents and "a1" in master.registry.gone
    # It comes back with the task: the task is killed, the agent not registered, nor asked to.
    running = wire.RunningTask(framework_id=fw, task_id="t1", resources=Resources(cpus=0.5, mem=64))
    sent = await master.handle(
        wire.RegisterAgent(agent_id="a1", hostname="host-a1", resources=CPU2, running_tasks=(running,))
    )
    assert [(k.task_id, k.reason) for k in of(sent, wire.KillTask)] == [
        ("t1", wire.StatusReason.AGENT_REMOVED)
    ]
    assert "a1" not in master.cluster.agents and not of(sent, wire.AgentAdded)
    assert not await master.handle(wire.Heartbeat(agent_id="a1", free=CPU2))
    assert not await agents.mark_gone(master.core, "never-seen")
