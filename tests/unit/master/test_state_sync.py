"""The master's view goes to the allocator in parts with nothing of the master's between them."""

from __future__ import annotations

import asyncio

from meseta.master.outbox import Outbox
from meseta.master.settings import MasterSettings
from meseta.sdk import wire
from meseta.sdk.wire import Resources
from tests.unit.master.fakes import FakeMaster, RecordingPublisher, of

CPU4 = Resources(cpus=4, mem=4096)


async def test_no_allocator_message_goes_between_a_views_parts() -> None:
    agents = [
        wire.AgentAdded(agent_id=f"agent-{i}", hostname=f"h{i}", total=CPU4, available=CPU4) for i in range(8)
    ]
    parts = wire.state_sync_parts(agents, [], [], max_bytes=1500)
    assert len(parts) >= 3
    publisher = RecordingPublisher()
    outbox = Outbox(publisher)
    before, after = wire.OffersRevived(framework_id="fw-0"), wire.OffersSuppressed(framework_id="fw-0")
    views: list[int] = []

    def view() -> list[wire.StateSync]:
        views.append(len(publisher.sent))
        return parts

    # Each publish yields to the loop: without the lock, `after` went out between the first two parts.
    await asyncio.gather(outbox.to_allocator(before), outbox.sync_allocator(view), outbox.to_allocator(after))
    sent = [s.message for s in publisher.take()]
    assert sent == [before, *parts, after]
    assert views == [0]  # taken once, when the view began to go


async def test_agents_registering_again_with_tasks_owe_the_allocator_one_view_not_one_each() -> None:
    # After a failover every agent that runs tasks registers again: each sent the whole view (40 here).
    master = FakeMaster()
    fw, _ = await master.framework()
    sent = master.publisher.take()
    for i in range(40):
        running = wire.RunningTask(framework_id=fw, task_id=f"t{i}", resources=Resources(cpus=1, mem=64))
        sent += await master.handle(
            wire.RegisterAgent(agent_id=f"a{i}", hostname=f"h{i}", resources=CPU4, running_tasks=(running,))
        )
    await master.core.outbox.flush_owed()
    syncs = [m for m in of(sent + master.publisher.take(), wire.StateSync)]
    assert 1 <= len(syncs) <= 3, len(syncs)
    assert master.core.outbox.owed_syncs == len(syncs)
    # The last view holds every agent and what its task holds: none of them is offered as free.
    last = syncs[-1]
    assert {a.agent_id for a in last.agents} == {f"a{i}" for i in range(40)}
    assert sorted(h.agent_id for h in last.held if h.framework_id == fw) == sorted(f"a{i}" for i in range(40))


async def test_a_view_owed_after_one_was_taken_is_sent_again() -> None:
    outbox = Outbox(RecordingPublisher())
    taken: list[int] = []
    agents: list[str] = ["a0"]

    def view() -> list[wire.StateSync]:
        taken.append(len(agents))
        added = [wire.AgentAdded(agent_id=a, hostname=a, total=CPU4, available=CPU4) for a in agents]
        if len(taken) == 1:
            # A registration handled while the first view goes out: it owes one more.
            agents.append("a1")
            outbox.sync_allocator_soon(view)
        return wire.state_sync_parts(added, [], [])

    outbox.sync_allocator_soon(view)
    await outbox.flush_owed()
    assert taken == [1, 2] and outbox.owed_syncs == 2


def test_the_periodic_view_is_rarer_on_a_large_cluster() -> None:
    """At 50,000 agents a view held the allocator 1.2 s; every 30 s, that was 4 % of its time."""
    settings = MasterSettings(amqp_url="amqp://", state_sync_interval=30.0)
    assert settings.sync_interval(1_000) == settings.sync_interval(12_000) == 30.0
    assert settings.sync_interval(50_000) == 125.0
    assert MasterSettings(amqp_url="amqp://", state_sync_interval=600.0).sync_interval(50_000) == 600.0
