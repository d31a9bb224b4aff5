"""A master's view too large for one message travels in parts, and the allocator takes it whole.

At about 7,000 agents a view passed the decoder's MiB and was dead-lettered unread; at 2 MiB the broker
refused it and closed the master's channel, and the master stopped (seen at 21,000 emulated agents).
"""

from __future__ import annotations

import pytest

from meseta.allocator import handlers
from meseta.allocator.pipeline import plan_cycle
from meseta.allocator.policy import DRF
from meseta.allocator.state import AllocatorState, Refusal
from meseta.sdk import wire
from meseta.sdk.wire import Resources

CPU4 = Resources(cpus=4, mem=4096)


def view(agents: int) -> tuple[list[wire.AgentAdded], list[wire.FrameworkAdded], list[wire.Held]]:
    added = [
        wire.AgentAdded(
            agent_id=f"agent-{i:05d}",
            hostname=f"host-{i:05d}.example.org",
            attributes={"rack": f"r{i % 40}", "zone": "z1"},
            total=CPU4,
            available=CPU4,
        )
        for i in range(agents)
    ]
    frameworks = [wire.FrameworkAdded(framework_id=f"fw-{f}", weight=f + 1.0) for f in range(4)]
    held = [
        wire.Held(framework_id=f"fw-{i % 4}", agent_id=a.agent_id, resources=Resources(cpus=1, mem=512))
        for i, a in enumerate(added)
    ]
    return added, frameworks, held


def test_a_view_of_ten_thousand_agents_goes_in_parts_each_the_decoder_takes() -> None:
    agents, frameworks, held = view(10_000)
    whole = wire.StateSync(agents=tuple(agents), frameworks=tuple(frameworks), held=tuple(held))
    with pytest.raises(wire.DecodeError, match="oversized"):  # one message, as the master sent it
        wire.decode(wire.encode(whole), wire.TO_ALLOCATOR)
    parts = wire.state_sync_parts(agents, frameworks, held)
    assert len(parts) > 1
    assert [p.part for p in parts] == list(range(len(parts)))
    assert {(p.sync_id, p.parts) for p in parts} == {(parts[0].sync_id, len(parts))}
    bodies = [wire.encode(p) for p in parts]
    assert max(map(len, bodies)) <= wire.SYNC_PART_BYTES
    decoded = [wire.decode(body, wire.TO_ALLOCATOR) for body in bodies]
    assert [a for p in decoded for a in p.agents] == agents  # type: ignore[attr-defined]
    assert [h for p in decoded for h in p.held] == held  # type: ignore[attr-defined]
    assert [f for p in decoded for f in p.frameworks] == frameworks  # type: ignore[attr-defined]


def test_a_small_view_is_one_message() -> None:
    agents, frameworks, held = view(3)
    (only,) = wire.state_sync_parts(agents, frameworks, held)
    assert (only.part, only.parts, len(only.agents), len(only.held)) == (0, 1, 3, 3)


def test_a_part_beyond_its_count_is_refused() -> None:
    with pytest.raises(ValueError, match="part 2 of a sync in 2 parts"):
        wire.StateSync(sync_id="sync-1", part=2, parts=2)
    # What an allocator keeps of an unfinished view is bounded: no sender may announce more parts.
    with pytest.raises(ValueError, match="less than or equal to 1024"):
        wire.StateSync(sync_id="sync-1", part=0, parts=wire.MAX_SYNC_PARTS + 1)
    with pytest.raises(ValueError, match="at most 64 characters"):
        wire.StateSync(sync_id="s" * 65, part=0, parts=2)


def test_the_allocator_takes_a_view_in_parts_only_once_whole() -> None:
    agents, frameworks, held = view(6)
    parts = wire.state_sync_parts(agents, frameworks, held, max_bytes=1500)
    assert len(parts) >= 3
    state = AllocatorState()
    handlers.apply(state, wire.AgentAdded(agent_id="old", hostname="h", total=CPU4, available=CPU4))
    for part in parts[:-1]:
        handlers.apply(state, part)
        assert list(state.agents) == ["old"]  # a part alone would have replaced the state with a slice
    handlers.apply(state, parts[-1])
    one = AllocatorState()
    handlers.apply(one, wire.StateSync(agents=tuple(agents), frameworks=tuple(frameworks), held=tuple(held)))
    assert sorted(state.agents) == sorted(one.agents) == sorted(a.agent_id for a in agents)
    assert {f: fw.by_agent for f, fw in state.frameworks.items()} == {
        f: fw.by_agent for f, fw in one.frameworks.items()
    }
    assert state.total == one.total and state.sync.pending == 0


def test_an_unfinished_view_is_dropped_when_another_begins_or_a_part_is_missing() -> None:
    agents, frameworks, held = view(6)
    first = wire.state_sync_parts(agents[:3], frameworks, held[:3], max_bytes=1500)
    second = wire.state_sync_parts(agents, frameworks, held, max_bytes=1500)
    state = AllocatorState()
    handlers.apply(state, first[0])  # its master was lost before the rest
    for part in second:
        handlers.apply(state, part)
    assert sorted(state.agents) == sorted(a.agent_id for a in agents)
    # A part missing in the middle: nothing of that view is taken, and what follows it is dropped too.
    third = wire.state_sync_parts(agents[:2], frameworks, held[:2], max_bytes=1500)
    assert len(third) >= 3
    handlers.apply(state, third[0])
    for part in third[2:]:
        handlers.apply(state, part)
    assert sorted(state.agents) == sorted(a.agent_id for a in agents)
    assert state.sync.pending == 0


def test_a_view_that_changes_nothing_keeps_entries_and_parks() -> None:
    """At 50,000 agents each periodic view made every entry anew and unparked every agent: the next
    cycle visited all of them again (0.65 s) and a full collection walked 50,000 new entries."""
    agents, frameworks, _ = view(3)
    sync = wire.StateSync(agents=tuple(agents), frameworks=tuple(frameworks))
    state = AllocatorState()
    handlers.apply(state, sync)
    for a in agents:  # every framework declined every agent until 10 s (agent-00002: fw-0 until 5 s)
        state.filters[a.agent_id] = {f.framework_id: Refusal(10.0, CPU4) for f in frameworks}
    state.filters["agent-00002"]["fw-0"] = Refusal(5.0, CPU4)
    assert plan_cycle(state, DRF(), 1.0).grants == []
    parked, entries = dict(state.parked), dict(state.agents)
    assert len(parked) == 3

    handlers.apply(state, sync, 2.0)
    assert state.parked == parked and state.ready_agents(2.0) == []
    assert all(state.agents[a] is entries[a] for a in entries)
    assert state.ready_agents(6.0) == ["agent-00002"]  # its park still ends when its first filter does

    # An agent whose slice changed is visited again; the others stay parked.
    state.park("agent-00002", 5.0)
    busy = wire.Held(framework_id="fw-1", agent_id="agent-00001", resources=Resources(cpus=1, mem=512))
    handlers.apply(state, sync.model_copy(update={"held": (busy,)}), 3.0)
    assert (
        state.ready_agents(3.0) == ["agent-00001"]
        and state.agents["agent-00001"] is not entries["agent-00001"]
    )
    assert sorted(state.parked) == ["agent-00000", "agent-00002"]

    # A framework that wants something else (here, no longer suppressed) unparks every agent.
    quiet = sync.model_copy(
        update={"frameworks": (*frameworks[:3], frameworks[3].model_copy(update={"suppressed": True}))}
    )
    handlers.apply(state, quiet, 4.0)
    assert state.ready_agents(4.0) == sorted(entries)
    assert plan_cycle(state, DRF(), 4.0).grants == []
    handlers.apply(state, sync, 4.0)
    assert state.ready_agents(4.0) == sorted(entries)
