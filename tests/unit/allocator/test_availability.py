"""A drained agent: accounted as before, offered to nobody, until it is brought back."""

from __future__ import annotations

from meseta.allocator import handlers
from meseta.allocator.state import AllocatorState
from meseta.sdk import wire
from meseta.sdk.wire import Resources

CPU4 = Resources(cpus=4, mem=1024)


def test_an_unavailable_agent_keeps_its_accounting_and_is_visited_by_no_cycle() -> None:
    state = AllocatorState()
    handlers.apply(state, wire.AgentAdded(agent_id="a1", hostname="h1", total=CPU4, available=CPU4))
    handlers.apply(state, wire.AgentAdded(agent_id="a2", hostname="h2", total=CPU4, available=CPU4))
    handlers.apply(state, wire.FrameworkAdded(framework_id="f1"))
    state.allocate("f1", "a1", Resources(cpus=1, mem=64))
    handlers.apply(state, wire.AgentAvailability(agent_id="a1", available=False))
    assert state.ready_agents(0.0) == ["a2"]
    assert state.frameworks["f1"].by_agent["a1"] == Resources(cpus=1, mem=64)  # still counts
    assert state.total == CPU4 + CPU4
    # What its tasks give back is accounted, and still not offered.
    handlers.apply(
        state,
        wire.ResourcesRecovered(
            items=(wire.Recovered(framework_id="f1", agent_id="a1", resources=Resources(cpus=1, mem=64)),)
        ),
    )
    assert state.ready_agents(0.0) == ["a2"]
    handlers.apply(state, wire.AgentAvailability(agent_id="a1", available=True))
    assert state.ready_agents(0.0) == ["a1", "a2"]


def test_a_state_sync_keeps_an_agent_unavailable() -> None:
    state = AllocatorState()
    drained = wire.AgentAdded(agent_id="a1", hostname="h1", total=CPU4, available=CPU4, unavailable=True)
    handlers.apply(state, wire.StateSync(agents=(drained,)))
    assert state.ready_agents(0.0) == []
    assert "a1" in state.agents
