"""The allocator's view of the cluster: agents' unallocated resources, frameworks' allocations, filters.

All changes go through methods here, so the invariant holds in one place: for every agent,
``available + sum(allocations on it) == total``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meseta.sdk.wire import Resources


@dataclass
class AgentEntry:
    """An agent as the allocator sees it."""

    agent_id: str
    hostname: str
    attributes: dict[str, str]
    total: Resources
    available: Resources


@dataclass
class FrameworkEntry:
    """A framework and what it holds (offered or in use)."""

    framework_id: str
    role: str = "*"
    weight: float = 1.0
    suppressed: bool = False
    allocated: Resources = field(default_factory=Resources)
    by_agent: dict[str, Resources] = field(default_factory=dict)


@dataclass
class AllocatorState:
    """Everything a policy needs; mutated only by the allocator service between cycles."""

    agents: dict[str, AgentEntry] = field(default_factory=dict)
    frameworks: dict[str, FrameworkEntry] = field(default_factory=dict)
    filters: dict[tuple[str, str], float] = field(default_factory=dict)
    """(framework id, agent id) -> time until which that agent is not offered to that framework."""
    total: Resources = field(default_factory=Resources)

    def add_agent(
        self, agent_id: str, hostname: str, attributes: dict[str, str], total: Resources, available: Resources
    ) -> None:
        """Add an agent, or replace one that re-registered."""
        if agent_id in self.agents:
            self.remove_agent(agent_id)
        self.agents[agent_id] = AgentEntry(agent_id, hostname, attributes, total, available)
        self.total = self.total + total

    def remove_agent(self, agent_id: str) -> None:
        """Forget an agent and every allocation on it."""
        agent = self.agents.pop(agent_id, None)
        if agent is None:
            return
        self.total = self.total - agent.total
        for fw in self.frameworks.values():
            held = fw.by_agent.pop(agent_id, None)
            if held is not None:
                fw.allocated = fw.allocated - held
        self.filters = {k: v for k, v in self.filters.items() if k[1] != agent_id}

    def add_framework(self, framework_id: str, role: str, weight: float) -> None:
        """Add a framework (idempotent: a re-subscription keeps its allocations)."""
        fw = self.frameworks.get(framework_id)
        if fw is None:
            self.frameworks[framework_id] = FrameworkEntry(framework_id, role, weight)
        else:
            fw.role, fw.weight = role, weight

    def remove_framework(self, framework_id: str) -> None:
        """Forget a framework; what it held goes back to its agents."""
        fw = self.frameworks.pop(framework_id, None)
        if fw is None:
            return
        for agent_id, held in fw.by_agent.items():
            agent = self.agents.get(agent_id)
            if agent is not None:
                agent.available = agent.available + held
        self.filters = {k: v for k, v in self.filters.items() if k[0] != framework_id}

    def allocate(self, framework_id: str, agent_id: str, resources: Resources) -> None:
        """Move resources of an agent to a framework."""
        agent = self.agents[agent_id]
        fw = self.frameworks[framework_id]
        agent.available = agent.available - resources
        fw.allocated = fw.allocated + resources
        fw.by_agent[agent_id] = fw.by_agent.get(agent_id, Resources()) + resources

    def recover(
        self, framework_id: str, agent_id: str, resources: Resources, refuse_until: float | None
    ) -> bool:
        """Give a framework's resources on an agent back; False when nothing matched (stale event)."""
        fw = self.frameworks.get(framework_id)
        agent = self.agents.get(agent_id)
        held = fw.by_agent.get(agent_id) if fw is not None else None
        if fw is None or agent is None or held is None or not resources.fits_in(held):
            return False
        rest = held - resources
        if rest.is_empty():
            del fw.by_agent[agent_id]
        else:
            fw.by_agent[agent_id] = rest
        fw.allocated = fw.allocated - resources
        agent.available = agent.available + resources
        if refuse_until is not None:
            self.filters[(framework_id, agent_id)] = refuse_until
        return True

    def filtered(self, framework_id: str, agent_id: str, now: float) -> bool:
        """Whether a decline filter keeps this agent from this framework at ``now``."""
        until = self.filters.get((framework_id, agent_id))
        if until is None:
            return False
        if until <= now:
            del self.filters[(framework_id, agent_id)]
            return False
        return True

    def clear_filters(self, framework_id: str) -> None:
        """Drop a framework's decline filters (REVIVE)."""
        self.filters = {k: v for k, v in self.filters.items() if k[0] != framework_id}
