"""The allocator's Prometheus metrics, read from its state at scrape time (meseta.runtime.prometheus)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from meseta.runtime.prometheus import common, counter, gauge, histogram

if TYPE_CHECKING:
    from meseta.allocator.service import AllocatorService


def families(allocator: AllocatorService) -> list[Metric]:
    """The allocator's metric families now."""
    state = allocator.state
    out = common(allocator.bus, allocator.lag)
    leading = allocator.leading.is_set()
    out.append(
        gauge("meseta_allocator_leading", "1 while this allocator is the active one", {(): float(leading)})
    )
    out.append(
        gauge(
            "meseta_allocator_policy",
            "The policy in force (1 on its label)",
            {(allocator.policy.name,): 1.0},
            ["policy"],
        )
    )
    out.append(
        histogram(
            "meseta_allocation_cycle_seconds",
            "Planning time of one allocation cycle",
            allocator.cycle_seconds,
        )
    )
    out.append(counter("meseta_allocation_cycles", "Allocation cycles run", {(): float(allocator.cycles)}))
    out.append(counter("meseta_allocation_grants", "Grants made", {(): float(allocator.grants)}))
    unavailable = sum(1 for a in state.agents.values() if a.unavailable)
    agents = {("available",): float(len(state.agents) - unavailable), ("unavailable",): float(unavailable)}
    out.append(
        gauge(
            "meseta_allocator_agents", "Agents the allocator knows, by availability", agents, ["availability"]
        )
    )
    out.append(
        gauge(
            "meseta_allocator_frameworks",
            "Frameworks the allocator knows",
            {(): float(len(state.frameworks))},
        )
    )
    return out
