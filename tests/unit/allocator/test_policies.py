"""Allocation policies and the cycle pipeline, with no I/O."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from meseta.allocator import handlers
from meseta.allocator.pipeline import Plan, plan_cycle
from meseta.allocator.policy import DRF, Lottery, Policy, StrictPriority, WeightedFairShare, dominant_share
from meseta.allocator.state import AllocatorState, PendingRevocation, Refusal, RoleConfig
from meseta.sdk import wire
from meseta.sdk.wire import AttributeConstraint, OfferFilters, Resources


def cluster(agents: int, per_agent: Resources, **attrs: dict[str, str]) -> AllocatorState:
    state = AllocatorState()
    for i in range(agents):
        state.add_agent(f"a{i:03d}", f"host-{i}", attrs.get(f"a{i:03d}", {}), per_agent, per_agent)
    return state


def add(state: AllocatorState, framework_id: str, **fields: object) -> None:
    state.add_framework(wire.FrameworkAdded(framework_id=framework_id, **fields))  # type: ignore[arg-type]


def apply(state: AllocatorState, plan: Plan) -> None:
    for grant in plan.grants:
        state.allocate(grant.framework_id, grant.agent_id, grant.resources)


def cycle(state: AllocatorState, policy: Policy, now: float = 0.0, **kwargs: object) -> Plan:
    plan = plan_cycle(state, policy, now, **kwargs)  # type: ignore[arg-type]
    apply(state, plan)
    return plan


def test_drf_paper_example() -> None:
    """9 CPUs, 18 GB; A's tasks <1 CPU, 4 GB>, B's <3 CPU, 1 GB>: A runs 3 tasks, B runs 2."""
    total = Resources(cpus=9, mem=18 * 1024)
    demand = {"A": Resources(cpus=1, mem=4 * 1024), "B": Resources(cpus=3, mem=1024)}
    held = {"A": Resources(), "B": Resources()}
    free = total
    while fitting := [f for f in held if demand[f].fits_in(free)]:
        chosen = min(fitting, key=lambda f: (dominant_share(held[f], total), f))  # DRF's order
        held[chosen] += demand[chosen]
        free -= demand[chosen]
    assert held == {"A": Resources(cpus=3, mem=12 * 1024), "B": Resources(cpus=6, mem=2 * 1024)}
    assert dominant_share(held["A"], total) == dominant_share(held["B"], total) == pytest.approx(2 / 3)


def test_each_agent_goes_to_the_smallest_dominant_share() -> None:
    state = cluster(4, Resources(cpus=4, mem=4096))
    add(state, "f1")
    add(state, "f2")
    state.allocate("f1", "a000", Resources(cpus=4, mem=4096))
    plan = plan_cycle(state, DRF(), 0)
    assert [(g.framework_id, g.agent_id) for g in plan.grants] == [
        ("f2", "a001"),
        ("f1", "a002"),
        ("f2", "a003"),
    ]


@pytest.mark.parametrize("policy", [DRF(), WeightedFairShare()])
def test_weights_two_to_one_hold_over_a_long_run(policy: Policy) -> None:
    state = cluster(30, Resources(cpus=1, mem=1024))
    add(state, "heavy", weight=2.0)
    add(state, "light", weight=1.0)
    rng = random.Random(11)
    ratios = []
    for step in range(2000):
        cycle(state, policy, now=step)
        heavy, light = (state.frameworks[f].allocated.cpus for f in ("heavy", "light"))
        ratios.append(heavy / light)
        # Churn: a random task ends somewhere and its agent comes back.
        fw = state.frameworks[rng.choice(["heavy", "light"])]
        if fw.by_agent:
            agent_id = rng.choice(sorted(fw.by_agent))
            state.recover(fw.framework_id, agent_id, fw.by_agent[agent_id], None)
    mean = sum(ratios) / len(ratios)
    assert mean == pytest.approx(2.0, rel=0.05)


def test_roles_are_served_by_role_share_first() -> None:
    state = cluster(6, Resources(cpus=1, mem=1024))
    for i in range(4):
        add(state, f"many-{i}", role="crowd")
    add(state, "alone", role="solo")
    cycle(state, DRF())
    held = Counter(g for fw in state.frameworks.values() for g in [fw.role] * int(fw.allocated.cpus))
    assert held == {"crowd": 3, "solo": 3}


def test_priority_starves_lower_only_while_higher_has_demand() -> None:
    state = cluster(4, Resources(cpus=1, mem=1024))
    add(state, "websearch", priority=100)
    add(state, "indexing", priority=10)
    plan = cycle(state, StrictPriority())
    assert {g.framework_id for g in plan.grants} == {"websearch"}
    # websearch gives one agent back and declines it: indexing may have it.
    state.recover("websearch", "a000", Resources(cpus=1, mem=1024), refuse_until=60)
    assert [g.framework_id for g in cycle(state, StrictPriority(), now=1).grants] == ["indexing"]
    # websearch has no demand (suppressed): indexing gets what frees up.
    handlers.apply(state, wire.OffersSuppressed(framework_id="websearch"))
    state.recover("websearch", "a001", Resources(cpus=1, mem=1024), None)
    assert [g.framework_id for g in cycle(state, StrictPriority(), now=2).grants] == ["indexing"]
    # Demand back: websearch wins again.
    handlers.apply(state, wire.OffersRevived(framework_id="websearch"))
    state.recover("websearch", "a002", Resources(cpus=1, mem=1024), None)
    assert [g.framework_id for g in cycle(state, StrictPriority(), now=3).grants] == ["websearch"]


def test_lottery_shares_converge_to_ticket_ratios() -> None:
    state = cluster(1, Resources(cpus=1, mem=1024))
    tickets = {"one": 1.0, "two": 2.0, "three": 3.0}
    for name, weight in tickets.items():
        add(state, name, weight=weight)
    policy = Lottery(seed=42)
    wins = Counter[str]()
    rounds = 6000
    for _ in range(rounds):
        (grant,) = cycle(state, policy).grants
        wins[grant.framework_id] += 1
        state.recover(grant.framework_id, grant.agent_id, grant.resources, None)
    for name, weight in tickets.items():
        assert wins[name] / rounds == pytest.approx(weight / 6, rel=0.05), wins


def test_lottery_is_reproducible_from_its_seed() -> None:
    def draws(seed: int) -> list[str]:
        state = cluster(1, Resources(cpus=1, mem=1024))
        for name in ("x", "y", "z"):
            add(state, name)
        policy, out = Lottery(seed), []
        for _ in range(50):
            (grant,) = cycle(state, policy).grants
            out.append(grant.framework_id)
            state.recover(grant.framework_id, grant.agent_id, grant.resources, None)
        return out

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)


def test_min_offer_size_global_and_per_framework() -> None:
    state = cluster(2, Resources(cpus=2, mem=2048))
    add(state, "small")
    add(state, "big", filters=OfferFilters(min_resources=Resources(cpus=2, mem=1024)))
    state.allocate("small", "a000", Resources(cpus=1.5, mem=1024))
    # a000 has a 0.5-cpu slice: under the global minimum of 1 cpu, nobody gets it.
    plan = plan_cycle(state, DRF(), 0, Resources(cpus=1))
    assert [g.agent_id for g in plan.grants] == ["a001"]
    # Without the global minimum, only 'small' may take the 0.5 slice: 'big' wants 2 cpus or nothing.
    plan = plan_cycle(state, DRF(), 0)
    assert {(g.framework_id, g.agent_id) for g in plan.grants} == {("small", "a000"), ("big", "a001")}


def test_standing_filters_admit_only_matching_agents() -> None:
    state = AllocatorState()
    state.add_agent(
        "gpu",
        "gpu-host",
        {"rack": "r1"},
        Resources(cpus=4, mem=4096, gpus=2),
        Resources(cpus=4, mem=4096, gpus=2),
    )
    state.add_agent(
        "cpu1", "cpu-host-1", {"rack": "r1"}, Resources(cpus=4, mem=4096), Resources(cpus=4, mem=4096)
    )
    state.add_agent(
        "cpu2", "cpu-host-2", {"rack": "r2"}, Resources(cpus=4, mem=4096), Resources(cpus=4, mem=4096)
    )
    add(state, "trainer", filters=OfferFilters(min_resources=Resources(gpus=1)))
    add(
        state,
        "rack2",
        filters=OfferFilters(attributes=(AttributeConstraint(attribute="rack", op="in", values=("r2",)),)),
    )
    add(state, "picky", filters=OfferFilters(hostnames_deny=("cpu-host-2", "gpu-host")))
    plan = plan_cycle(state, DRF(), 0)
    assert {(g.framework_id, g.agent_id) for g in plan.grants} == {
        ("trainer", "gpu"),
        ("picky", "cpu1"),
        ("rack2", "cpu2"),
    }


def test_quota_is_served_first() -> None:
    state = cluster(8, Resources(cpus=1, mem=1024))
    state.roles = {"prod": RoleConfig(weight=0.001, quota=Resources(cpus=4, mem=4096))}
    add(state, "batch", role="batch")
    add(state, "service", role="prod")
    plan = cycle(state, DRF())
    first_four = [g.framework_id for g in plan.grants[:4]]
    assert first_four == ["service"] * 4
    assert state.frameworks["service"].allocated.cpus == 4  # then its tiny weight gives the rest to batch
    assert state.frameworks["batch"].allocated.cpus == 4


def test_revocation_is_planned_once_for_a_role_under_quota() -> None:
    state = cluster(4, Resources(cpus=1, mem=1024))
    add(state, "greedy", role="batch")
    cycle(state, DRF())
    assert state.frameworks["greedy"].allocated.cpus == 4
    state.roles = {"prod": RoleConfig(quota=Resources(cpus=2, mem=512))}
    add(state, "owed", role="prod")
    plan = plan_cycle(state, DRF(), now=10)
    assert plan.grants == []
    taken = wire.total(r.resources for r in plan.revocations)
    assert all(r.framework_id == "greedy" and r.for_role == "prod" for r in plan.revocations)
    assert taken.cpus == 2 and taken.mem == 512
    # The revocations in flight count: no second request until they lapse.
    for r in plan.revocations:
        state.revoking[(r.framework_id, r.agent_id)] = PendingRevocation(r.for_role, r.resources, until=20)
    assert plan_cycle(state, DRF(), now=11).revocations == []
    assert plan_cycle(state, DRF(), now=21).revocations != []


def test_roles_within_quota_are_not_revoked() -> None:
    state = cluster(2, Resources(cpus=1, mem=1024))
    state.roles = {"a": RoleConfig(quota=Resources(cpus=1)), "b": RoleConfig(quota=Resources(cpus=2))}
    add(state, "fa", role="a")
    cycle(state, DRF())  # fa holds both agents: 2 cpus, above its quota of 1
    add(state, "fb", role="b")
    revoked = plan_cycle(state, DRF(), 0).revocations
    # Only what role a holds beyond its own guarantee may be taken.
    assert wire.total(r.resources for r in revoked).cpus == 1


def test_agents_nobody_can_have_are_parked_until_something_changes() -> None:
    state = cluster(3, Resources(cpus=2, mem=2048))
    add(state, "f1")
    add(state, "f2")
    # Every offer is declined: f1 for 10 s on each agent; f2 for 5 s on a000, for 20 s on the others.
    for agent_id in ("a000", "a001", "a002"):
        whole = state.agents[agent_id].available
        state.filters[agent_id] = {
            "f1": Refusal(10.0, whole),
            "f2": Refusal(5.0 if agent_id == "a000" else 20.0, whole),
        }
    assert cycle(state, DRF(), 1).grants == []
    assert state.parked == {"a000": 5.0, "a001": 10.0, "a002": 10.0}
    assert state.ready_agents(4) == []
    # a000's first filter ends at 5 s: it is visited again, and f2 gets it.
    assert [(g.framework_id, g.agent_id) for g in cycle(state, DRF(), 6).grants] == [("f2", "a000")]
    assert state.ready_agents(7) == []
    # A framework that changes what it wants unparks everything (here f2 wants no host but x).
    handlers.apply(
        state, wire.FiltersUpdated(framework_id="f2", filters=OfferFilters(hostnames_allow=("x",))), 7
    )
    assert state.ready_agents(7) == ["a001", "a002"]
    assert cycle(state, DRF(), 7).grants == []
    assert state.parked == {"a001": 10.0, "a002": 10.0}
    # A revived framework's decline filters are gone: f1 gets both agents.
    handlers.apply(state, wire.OffersRevived(framework_id="f1"), 8)
    assert [(g.framework_id, g.agent_id) for g in cycle(state, DRF(), 8).grants] == [
        ("f1", "a001"),
        ("f1", "a002"),
    ]
    # A slice that changes is visited again at once; with f1 suppressed, only f2 could have it, whose
    # decline filter ends at 20 s; after that, f2's standing filter keeps it parked for good.
    handlers.apply(state, wire.OffersSuppressed(framework_id="f1"), 9)
    state.recover("f1", "a001", Resources(cpus=2, mem=2048), None)
    assert state.ready_agents(9) == ["a001"]
    assert cycle(state, DRF(), 9).grants == []
    assert state.parked["a001"] == 20.0
    assert cycle(state, DRF(), 21).grants == []
    assert state.parked["a001"] == float("inf")


def test_a_decline_filter_refuses_what_was_declined_not_what_is_freed_later() -> None:
    """Mesos's refusal filter: a slice the declined resources contain is not offered for the filter's
    length; one with more in it (a task of the framework ended there since) is."""
    state = cluster(1, Resources(cpus=2, mem=2048))
    add(state, "f1")
    cycle(state, DRF(), 0)  # f1 holds the whole agent, and launches a task of 2 cpus and 1 GiB

    def recovered(resources: Resources, refuse_seconds: float, now: float) -> None:
        item = wire.Recovered(
            framework_id="f1", agent_id="a000", resources=resources, refuse_seconds=refuse_seconds
        )
        handlers.apply(state, wire.ResourcesRecovered(items=(item,)), now)

    leftover = Resources(mem=1024)
    recovered(leftover, 0, 0)  # the offer's unused part
    assert [g.resources for g in cycle(state, DRF(), 1).grants] == [leftover]
    recovered(leftover, 5, 1)  # declined: no cpus in it, and for 5 s f1 wants none of it
    assert cycle(state, DRF(), 2).grants == []  # the same slice, filtered
    # The task ends: its cpus and memory come back. The slice is more than was declined: offered now,
    # not after the filter (before, the whole agent was filtered until 6 s).
    recovered(Resources(cpus=2, mem=1024), 0, 3)
    assert [g.resources for g in cycle(state, DRF(), 3).grants] == [Resources(cpus=2, mem=2048)]
    # Declined whole, it is filtered whole, until the filter ends.
    recovered(Resources(cpus=2, mem=2048), 5, 4)
    assert cycle(state, DRF(), 8).grants == []
    assert [g.framework_id for g in cycle(state, DRF(), 9.5).grants] == ["f1"]
