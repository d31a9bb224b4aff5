"""Allocation policies: each picks which eligible framework gets one agent's slice.

A policy is pure: it reads a :class:`View` (shares so far in this cycle) and returns a framework; the
pipeline (:mod:`.pipeline`) does feasibility, quotas and revocation the same way for every policy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from meseta.allocator.state import AllocatorState, FrameworkEntry
from meseta.sdk.wire import Resources

DEFAULT_LOTTERY_SEED = 1


@dataclass
class View:
    """What frameworks and roles hold so far in this cycle (the plan's grants included)."""

    state: AllocatorState
    held: dict[str, Resources]
    role_held: dict[str, Resources]

    def share(self, fw: FrameworkEntry) -> float:
        """The framework's weighted dominant share."""
        return dominant_share(self.held[fw.framework_id], self.state.total) / fw.weight

    def role_share(self, role: str) -> float:
        """The role's weighted dominant share."""
        held = self.role_held.get(role, Resources())
        return dominant_share(held, self.state.total) / self.state.role(role).weight


class Policy(Protocol):
    """What every allocation policy provides."""

    name: str

    def pick(self, candidates: list[FrameworkEntry], view: View) -> FrameworkEntry:
        """The framework, among non-empty ``candidates``, that gets the slice."""
        ...


def dominant_share(allocated: Resources, total: Resources) -> float:
    """The largest fraction of any cluster resource that ``allocated`` holds (DRF's measure)."""
    totals = total.scalars()
    return max(
        (amount / totals[name] for name, amount in allocated.scalars().items() if totals[name] > 0),
        default=0.0,
    )


class DRF:
    """Dominant Resource Fairness, hierarchical as in Mesos: the role with the smallest weighted share
    first, then the framework with the smallest weighted share within it; ties by id."""

    name = "drf"

    def pick(self, candidates: list[FrameworkEntry], view: View) -> FrameworkEntry:
        return min(
            candidates, key=lambda fw: (view.role_share(fw.role), fw.role, view.share(fw), fw.framework_id)
        )


class WeightedFairShare:
    """Fair share of one resource (cpus by default), scaled by framework weight."""

    name = "wfs"

    def __init__(self, resource: str = "cpus") -> None:
        self.resource = resource

    def pick(self, candidates: list[FrameworkEntry], view: View) -> FrameworkEntry:
        total = view.state.total.scalars()[self.resource] or 1.0

        def share(fw: FrameworkEntry) -> float:
            return view.held[fw.framework_id].scalars()[self.resource] / total / fw.weight

        return min(candidates, key=lambda fw: (share(fw), fw.framework_id))


class StrictPriority:
    """Higher ``priority`` always first (Borg: websearch 100 over indexing 10); DRF among equals.

    Lower priorities get only what higher ones decline, filter out, or do not want (suppressed)."""

    name = "priority"

    def pick(self, candidates: list[FrameworkEntry], view: View) -> FrameworkEntry:
        return min(candidates, key=lambda fw: (-fw.priority, view.share(fw), fw.framework_id))


class Lottery:
    """Lottery scheduling: the winner is drawn with tickets proportional to weight.

    The generator is seeded, so a run is reproducible; over many draws shares converge to ticket ratios.
    """

    name = "lottery"

    def __init__(self, seed: int = DEFAULT_LOTTERY_SEED) -> None:
        self.rng = random.Random(seed)

    def pick(self, candidates: list[FrameworkEntry], view: View) -> FrameworkEntry:
        ordered = sorted(candidates, key=lambda fw: fw.framework_id)
        return self.rng.choices(ordered, weights=[fw.weight for fw in ordered])[0]


POLICIES: dict[str, type[DRF | WeightedFairShare | StrictPriority | Lottery]] = {
    p.name: p for p in (DRF, WeightedFairShare, StrictPriority, Lottery)
}


def make_policy(name: str) -> Policy:
    """A policy by name."""
    try:
        return POLICIES[name]()
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; known: {sorted(POLICIES)}") from None
