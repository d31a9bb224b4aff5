"""The DRF policy and the allocator state, with no I/O."""

from __future__ import annotations

from meseta.allocator import handlers
from meseta.allocator.policy import DRF, dominant_share
from meseta.allocator.state import AllocatorState
from meseta.sdk import wire
from meseta.sdk.wire import Resources


def state_with(agents: dict[str, Resources], frameworks: list[str]) -> AllocatorState:
    state = AllocatorState()
    for agent_id, total in agents.items():
        state.add_agent(agent_id, agent_id, {}, total, total)
    for framework_id in frameworks:
        state.add_framework(framework_id, "*", 1.0)
    return state


def test_drf_paper_example_progressive_filling() -> None:
    """DRF paper: 9 CPUs, 18 GB; A's tasks <1 CPU, 4 GB>, B's <3 CPU, 1 GB> -> A runs 3, B runs 2."""
    total = Resources(cpus=9, mem=18 * 1024)
    demand = {"A": Resources(cpus=1, mem=4 * 1024), "B": Resources(cpus=3, mem=1024)}
    held = {"A": Resources(), "B": Resources()}
    free = total
    while True:
        fitting = [f for f in held if demand[f].fits_in(free)]
        if not fitting:
            break
        # The policy's own order: smallest dominant share first.
        chosen = min(fitting, key=lambda f: (dominant_share(held[f], total), f))
        held[chosen] += demand[chosen]
        free -= demand[chosen]
    assert held["A"] == Resources(cpus=3, mem=12 * 1024)
    assert held["B"] == Resources(cpus=6, mem=2 * 1024)
    assert dominant_share(held["A"], total) == dominant_share(held["B"], total) == 2 / 3


def test_each_agent_goes_to_the_smallest_dominant_share() -> None:
    agents = {f"a{i}": Resources(cpus=4, mem=4096) for i in range(4)}
    state = state_with(agents, ["f1", "f2"])
    state.allocate("f1", "a0", Resources(cpus=4, mem=4096))
    plan = DRF().allocate(state, now=0)
    # f1 already holds 1/4 of the cluster: f2 gets the next agent, then they alternate by share.
    assert [(g.framework_id, g.agent_id) for g in plan] == [("f2", "a1"), ("f1", "a2"), ("f2", "a3")]
    assert all(g.resources == agents[g.agent_id] for g in plan)


def test_weights_scale_shares() -> None:
    state = state_with({f"a{i}": Resources(cpus=1, mem=1024) for i in range(3)}, [])
    state.add_framework("heavy", "*", 2.0)
    state.add_framework("light", "*", 1.0)
    plan = DRF().allocate(state, now=0)
    assert [g.framework_id for g in plan] == ["heavy", "light", "heavy"]


def test_decline_filter_suppression_and_revive() -> None:
    state = state_with({"a0": Resources(cpus=2, mem=2048)}, ["f1", "f2"])
    (grant,) = DRF().allocate(state, now=0)
    assert grant.framework_id == "f1"
    state.allocate(grant.framework_id, grant.agent_id, grant.resources)
    assert DRF().allocate(state, now=0) == []  # nothing unallocated left
    handlers.apply(
        state,
        wire.ResourcesRecovered(
            framework_id="f1", agent_id="a0", resources=grant.resources, refuse_seconds=5
        ),
        now=100,
    )
    assert [g.framework_id for g in DRF().allocate(state, now=101)] == ["f2"]
    handlers.apply(state, wire.OffersSuppressed(framework_id="f2"))
    assert DRF().allocate(state, now=101) == []
    assert [g.framework_id for g in DRF().allocate(state, now=105.5)] == ["f1"]  # filter expired
    handlers.apply(state, wire.OffersRevived(framework_id="f2"))
    handlers.apply(state, wire.OffersSuppressed(framework_id="f1"))
    assert [g.framework_id for g in DRF().allocate(state, now=106)] == ["f2"]


def test_state_keeps_its_invariant_through_recovery_and_removal() -> None:
    state = state_with({"a0": Resources(cpus=2, mem=2048), "a1": Resources(cpus=2, mem=2048)}, ["f1"])
    state.allocate("f1", "a0", Resources(cpus=1, mem=512))
    assert state.agents["a0"].available == Resources(cpus=1, mem=1536)
    assert not state.recover("f1", "a0", Resources(cpus=5), None)  # more than held: stale, ignored
    assert state.recover("f1", "a0", Resources(cpus=1, mem=512), None)
    assert state.agents["a0"].available == state.agents["a0"].total
    state.allocate("f1", "a1", Resources(cpus=2, mem=2048))
    state.remove_agent("a1")
    assert state.frameworks["f1"].allocated.is_empty()
    assert state.total == Resources(cpus=2, mem=2048)
    state.allocate("f1", "a0", Resources(cpus=2, mem=2048))
    state.remove_framework("f1")
    assert state.agents["a0"].available == state.agents["a0"].total


def test_tiny_slices_are_not_offered() -> None:
    state = state_with({"a0": Resources(cpus=0.005, mem=8)}, ["f1"])
    assert DRF().allocate(state, now=0) == []
