"""Property: whatever happens, no policy allocates more than an agent has, and accounts never drift."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meseta.allocator import handlers
from meseta.allocator.pipeline import plan_cycle
from meseta.allocator.policy import make_policy
from meseta.allocator.state import AllocatorState, RoleConfig
from meseta.sdk import wire
from meseta.sdk.wire import OfferFilters, Resources

resources = st.builds(
    Resources,
    cpus=st.floats(0.1, 16).map(lambda v: round(v, 1)),
    mem=st.integers(64, 16384).map(float),
    gpus=st.integers(0, 2),
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("agent"), st.integers(0, 5), resources),
        st.tuples(
            st.just("framework"),
            st.integers(0, 3),
            st.sampled_from(["*", "prod", "batch"]),
            st.floats(0.5, 3),
        ),
        st.tuples(st.just("cycle"), st.floats(0, 100)),
        st.tuples(st.just("release"), st.integers(0, 3), st.integers(0, 5), st.floats(0, 1)),
        st.tuples(st.just("remove_agent"), st.integers(0, 5)),
        st.tuples(st.just("remove_framework"), st.integers(0, 3)),
        st.tuples(st.just("suppress"), st.integers(0, 3)),
        st.tuples(st.just("gpu_only"), st.integers(0, 3)),
    ),
    max_size=60,
)


def check_invariants(state: AllocatorState) -> None:
    for agent in state.agents.values():
        allocated = wire.total(
            fw.by_agent[agent.agent_id] for fw in state.frameworks.values() if agent.agent_id in fw.by_agent
        )
        for name, amount in (agent.available + allocated).scalars().items():
            assert amount == pytest.approx(agent.total.scalars()[name], abs=1e-3)
    for fw in state.frameworks.values():
        assert fw.allocated.scalars() == pytest.approx(wire.total(fw.by_agent.values()).scalars(), abs=1e-3)
    assert state.total == wire.total(a.total for a in state.agents.values())


@pytest.mark.parametrize("policy_name", ["drf", "wfs", "priority", "lottery"])
@settings(max_examples=60, deadline=None)
@given(events=ops)
def test_no_policy_over_allocates(policy_name: str, events: list[tuple[object, ...]]) -> None:
    policy = make_policy(policy_name)
    state = AllocatorState(roles={"prod": RoleConfig(quota=Resources(cpus=4, mem=1024))})
    for op in events:
        match op:
            case ("agent", int(i), Resources() as total):
                state.add_agent(f"a{i}", f"h{i}", {}, total, total)
            case ("framework", int(i), str(role), float(weight)):
                handlers.apply(
                    state, wire.FrameworkAdded(framework_id=f"f{i}", role=role, weight=weight, priority=i)
                )
            case ("cycle", float(now)):
                plan = plan_cycle(state, policy, now)
                for grant in plan.grants:
                    assert grant.resources.fits_in(state.agents[grant.agent_id].available)
                    state.allocate(grant.framework_id, grant.agent_id, grant.resources)
                for revoke in plan.revocations:
                    assert revoke.resources.fits_in(
                        state.frameworks[revoke.framework_id].by_agent[revoke.agent_id]
                    )
            case ("release", int(f), int(a), float(part)):
                fw = state.frameworks.get(f"f{f}")
                if fw and f"a{a}" in fw.by_agent:
                    held = fw.by_agent[f"a{a}"]
                    give = (
                        held
                        if part > 0.5
                        else Resources(cpus=round(held.cpus / 2, 3), mem=round(held.mem / 2, 3))
                    )
                    assert state.recover(fw.framework_id, f"a{a}", give, None)
            case ("remove_agent", int(i)):
                state.remove_agent(f"a{i}")
            case ("remove_framework", int(i)):
                state.remove_framework(f"f{i}")
            case ("suppress", int(i)):
                handlers.apply(state, wire.OffersSuppressed(framework_id=f"f{i}"))
            case ("gpu_only", int(i)):
                handlers.apply(
                    state,
                    wire.FiltersUpdated(
                        framework_id=f"f{i}", filters=OfferFilters(min_resources=Resources(gpus=1))
                    ),
                )
        check_invariants(state)
