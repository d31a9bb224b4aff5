"""Allocation policies: pure functions from allocator state to a plan of grants.

A policy reads the state and returns grants; it performs no I/O and does not mutate the state (the
service applies the plan). Filters' expiry is the one exception: reading an expired filter drops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from meseta.allocator.state import AllocatorState
from meseta.sdk.wire import Resources

MIN_ALLOCATABLE_CPUS = 0.01
MIN_ALLOCATABLE_MEM = 32.0
"""Mesos's floor: a slice with less than both of these is too small to offer."""


@dataclass(frozen=True)
class Grant:
    """Offer ``resources`` on ``agent_id`` to ``framework_id``."""

    framework_id: str
    agent_id: str
    resources: Resources


class Policy(Protocol):
    """What every allocation policy provides."""

    name: str

    def allocate(self, state: AllocatorState, now: float) -> list[Grant]:
        """The plan for this cycle."""
        ...


def dominant_share(allocated: Resources, total: Resources) -> float:
    """The largest fraction of any cluster resource that ``allocated`` holds (DRF's measure)."""
    totals = total.scalars()
    return max(
        (amount / totals[name] for name, amount in allocated.scalars().items() if totals[name] > 0),
        default=0.0,
    )


def allocatable(resources: Resources) -> bool:
    """Whether a slice is worth offering."""
    return resources.cpus >= MIN_ALLOCATABLE_CPUS or resources.mem >= MIN_ALLOCATABLE_MEM


class DRF:
    """Dominant Resource Fairness, as in Mesos's hierarchical allocator (one level of roles for now).

    Each agent's whole unallocated slice goes to the eligible framework with the smallest weighted
    dominant share; shares are updated after each grant, so one cycle spreads agents fairly.
    Ties break by framework id, which keeps plans deterministic.
    """

    name = "drf"

    def allocate(self, state: AllocatorState, now: float) -> list[Grant]:
        """See class docstring."""
        eligible = [fw for fw in state.frameworks.values() if not fw.suppressed]
        if not eligible:
            return []
        held = {fw.framework_id: fw.allocated for fw in eligible}
        weights = {fw.framework_id: fw.weight for fw in eligible}
        share = {fid: dominant_share(r, state.total) / weights[fid] for fid, r in held.items()}
        plan: list[Grant] = []
        for agent_id in sorted(state.agents):
            agent = state.agents[agent_id]
            if not allocatable(agent.available):
                continue
            candidates = [fid for fid in held if not state.filtered(fid, agent_id, now)]
            if not candidates:
                continue
            winner = min(candidates, key=lambda fid: (share[fid], fid))
            plan.append(Grant(winner, agent_id, agent.available))
            held[winner] = held[winner] + agent.available
            share[winner] = dominant_share(held[winner], state.total) / weights[winner]
        return plan


POLICIES: dict[str, type[DRF]] = {"drf": DRF}
