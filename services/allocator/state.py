"""The allocator's view of the cluster: agents' unallocated resources, frameworks' allocations, filters.

All changes go through methods here, so the invariant holds in one place: for every agent,
``available + sum(allocations on it) == total``.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from meseta.allocator.sync import SyncAssembler
from meseta.sdk import wire
from meseta.sdk.wire import OfferFilters, Resources

MIN_ALLOCATABLE_CPUS = 0.01
MIN_ALLOCATABLE_MEM = 32.0
"""Mesos's floor: a slice with less than both of these is too small to offer."""


def allocatable(resources: Resources) -> bool:
    """Whether a slice is worth offering at all."""
    return resources.cpus >= MIN_ALLOCATABLE_CPUS or resources.mem >= MIN_ALLOCATABLE_MEM


@dataclass(frozen=True)
class RoleConfig:
    """A role's weight and guaranteed allocation (quota)."""

    weight: float = 1.0
    quota: Resources = field(default_factory=Resources)


@dataclass(frozen=True)
class PendingRevocation:
    """Resources being taken back for a role; not asked for again until ``until``."""

    role: str
    resources: Resources
    until: float


@dataclass
class AgentEntry:
    """An agent as the allocator sees it."""

    agent_id: str
    hostname: str
    attributes: dict[str, str]
    total: Resources
    available: Resources
    unavailable: bool = False
    """Drained or in maintenance: accounted as usual, offered to nobody."""


@dataclass
class FrameworkEntry:
    """A framework and what it holds (offered or in use)."""

    framework_id: str
    role: str = "*"
    weight: float = 1.0
    priority: int = 0
    filters: OfferFilters = field(default_factory=OfferFilters)
    suppressed: bool = False
    allocated: Resources = field(default_factory=Resources)
    by_agent: dict[str, Resources] = field(default_factory=dict)


@dataclass(frozen=True)
class Refusal:
    """A decline filter, as in Mesos: until ``until``, the framework is not offered a slice of the agent
    that ``resources`` (what it declined or left unused there) contains. A slice with more in it (a task
    ended there since) is offered: the framework has not turned that down. Filtering the whole agent
    instead held every freed cpu of a busy framework's agent back for the filter's length whenever it had
    declined a leftover (memory with no cpus) meanwhile."""

    until: float
    resources: Resources

    def refuses(self, slice_: Resources) -> bool:
        return slice_.fits_in(self.resources)


@dataclass
class AllocatorState:
    """Everything a policy needs; mutated only by the allocator service between cycles."""

    agents: dict[str, AgentEntry] = field(default_factory=dict)
    frameworks: dict[str, FrameworkEntry] = field(default_factory=dict)
    filters: dict[str, dict[str, Refusal]] = field(default_factory=dict)
    """Agent id -> framework id -> the decline filter keeping what it refused there from it (by agent: a
    lost agent's filters go with it in one step, however many there are)."""
    total: Resources = field(default_factory=Resources)
    roles: dict[str, RoleConfig] = field(default_factory=dict)
    revoking: dict[tuple[str, str], PendingRevocation] = field(default_factory=dict)
    """(framework id, agent id) -> a revocation in flight."""
    free_agents: set[str] = field(default_factory=set)
    """Index: agents with an allocatable slice, so a cycle only visits those."""
    parked: dict[str, float] = field(default_factory=dict)
    """Free agents no framework could be offered, and until when that holds (the first of their decline
    filters to expire). Cycles skip them: at 10,000 agents that every framework has declined, visiting
    each one every cycle was most of the allocator's time. Anything that could make a framework a
    candidate again unparks: the agent's slice changing, or any framework changing
    (``frameworks_changed``)."""
    _ready: set[str] = field(default_factory=set)
    """Free agents not parked: what a cycle visits."""
    _wakeups: list[tuple[float, str]] = field(default_factory=list)
    """Heap of (parked until, agent id), so expiring parks cost nothing until they expire."""
    sync: SyncAssembler = field(default_factory=SyncAssembler)
    """The parts of a master's view under way (a view too large for one message)."""

    def _touch(self, agent: AgentEntry) -> None:
        self.parked.pop(agent.agent_id, None)
        if allocatable(agent.available) and not agent.unavailable:
            self.free_agents.add(agent.agent_id)
            self._ready.add(agent.agent_id)
        else:
            self.free_agents.discard(agent.agent_id)
            self._ready.discard(agent.agent_id)

    def frameworks_changed(self) -> None:
        """A framework came, went, or changed what it wants: every parked agent gets looked at again."""
        self._ready.update(self.parked)
        self.parked.clear()
        self._wakeups.clear()

    def park(self, agent_id: str, until: float) -> None:
        """No framework can have this agent's slice before ``until`` (unless something changes)."""
        self.parked[agent_id] = until
        self._ready.discard(agent_id)
        if until != math.inf:
            heapq.heappush(self._wakeups, (until, agent_id))

    def ready_agents(self, now: float) -> list[str]:
        """The free agents a cycle at ``now`` visits (parks that ended are lifted), in id order."""
        while self._wakeups and self._wakeups[0][0] <= now:
            until, agent_id = heapq.heappop(self._wakeups)
            if self.parked.get(agent_id) == until:
                del self.parked[agent_id]
                self._ready.add(agent_id)
        return sorted(self._ready)

    def filter_expiry(self, framework_id: str, agent_id: str) -> float:
        """When the decline filter of this framework on this agent ends (infinity: there is none)."""
        refusal = self.filters.get(agent_id, {}).get(framework_id)
        return math.inf if refusal is None else refusal.until

    def role(self, name: str) -> RoleConfig:
        """A role's configuration (defaults for roles nobody configured)."""
        return self.roles.get(name) or RoleConfig()

    def add_agent(
        self,
        agent_id: str,
        hostname: str,
        attributes: dict[str, str],
        total: Resources,
        available: Resources,
        unavailable: bool = False,
    ) -> None:
        """Add an agent, or replace one that re-registered."""
        if agent_id in self.agents:
            self.remove_agent(agent_id)
        agent = AgentEntry(agent_id, hostname, attributes, total, available, unavailable)
        self.agents[agent_id] = agent
        self.total = self.total + total
        self._touch(agent)

    def set_available(self, agent_id: str, available: bool) -> bool:
        """Offer an agent again, or no more (its allocations stay); False if it is unknown."""
        agent = self.agents.get(agent_id)
        if agent is None:
            return False
        agent.unavailable = not available
        self._touch(agent)
        return True

    def remove_agent(self, agent_id: str) -> None:
        """Forget an agent and every allocation on it."""
        agent = self.agents.pop(agent_id, None)
        if agent is None:
            return
        self.total = self.total - agent.total
        self.free_agents.discard(agent_id)
        self._ready.discard(agent_id)
        self.parked.pop(agent_id, None)
        for fw in self.frameworks.values():
            held = fw.by_agent.pop(agent_id, None)
            if held is not None:
                fw.allocated = fw.allocated - held
        self.filters.pop(agent_id, None)
        self.revoking = {k: v for k, v in self.revoking.items() if k[1] != agent_id}

    def add_framework(self, event: wire.FrameworkAdded) -> None:
        """Add a framework (idempotent: a re-subscription keeps its allocations)."""
        fw = self.frameworks.setdefault(event.framework_id, FrameworkEntry(event.framework_id))
        fw.role, fw.weight, fw.priority = event.role, event.weight, event.priority
        fw.filters, fw.suppressed = event.filters, event.suppressed
        self.frameworks_changed()

    def set_suppressed(self, framework_id: str, suppressed: bool) -> None:
        """SUPPRESS / REVIVE: whether a framework wants offers at all."""
        if fw := self.frameworks.get(framework_id):
            fw.suppressed = suppressed
            self.frameworks_changed()

    def set_standing_filters(self, framework_id: str, filters: OfferFilters) -> None:
        """A framework's standing filters (attributes, hostnames, minimum size) changed."""
        if fw := self.frameworks.get(framework_id):
            fw.filters = filters
            self.frameworks_changed()

    def remove_framework(self, framework_id: str) -> None:
        """Forget a framework; what it held goes back to its agents."""
        fw = self.frameworks.pop(framework_id, None)
        if fw is None:
            return
        for agent_id, held in fw.by_agent.items():
            agent = self.agents.get(agent_id)
            if agent is not None:
                agent.available = agent.available + held
                self._touch(agent)
        self.clear_filters(framework_id)  # also unparks every agent
        self.revoking = {k: v for k, v in self.revoking.items() if k[0] != framework_id}

    def allocate(self, framework_id: str, agent_id: str, resources: Resources) -> None:
        """Move resources of an agent to a framework."""
        agent = self.agents[agent_id]
        fw = self.frameworks[framework_id]
        agent.available = agent.available - resources
        fw.allocated = fw.allocated + resources
        fw.by_agent[agent_id] = fw.by_agent.get(agent_id, Resources()) + resources
        self._touch(agent)

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
        self._touch(agent)
        if refuse_until is not None:
            # The latest refusal on the agent replaces an earlier one (Mesos keeps both; a slice either
            # contains is offered here at worst once more, and declined again).
            self.filters.setdefault(agent_id, {})[framework_id] = Refusal(refuse_until, resources)
        return True

    def filtered(self, framework_id: str, agent_id: str, now: float) -> bool:
        """Whether a decline filter keeps this agent's slice from this framework at ``now``."""
        on_agent = self.filters.get(agent_id)
        if on_agent is None or (refusal := on_agent.get(framework_id)) is None:
            return False
        if refusal.until <= now:
            del on_agent[framework_id]
            return False
        return refusal.refuses(self.agents[agent_id].available)

    def clear_filters(self, framework_id: str) -> None:
        """Drop a framework's decline filters (REVIVE)."""
        for on_agent in self.filters.values():
            on_agent.pop(framework_id, None)
        self.frameworks_changed()

    def role_held(self) -> dict[str, Resources]:
        """What each role's frameworks hold together."""
        held: dict[str, Resources] = {}
        for fw in self.frameworks.values():
            held[fw.role] = held.get(fw.role, Resources()) + fw.allocated
        return held

    def replace_with(self, sync: wire.StateSync) -> None:
        """Drop everything and take the master's view (filters and roles are kept: they are not soft).

        The result is the view's, but what it leaves as it was stays as it was: an agent whose entry comes
        out equal keeps its entry object and, while no framework changed what it may be offered, its park.
        The periodic view at 50,000 agents otherwise made 50,000 new long-lived entries (a full collection
        walks them all) and unparked every agent, so the next cycle visited each one again (0.65 s).
        """
        before_agents, before_parked, before_wakeups = self.agents, self.parked, self._wakeups
        before_wanted = self._wanted()
        self.agents, self.parked, self._wakeups = {}, {}, []
        self.frameworks.clear()
        self.free_agents.clear()
        self.revoking.clear()
        self._ready.clear()
        self.total = Resources()
        for agent in sync.agents:
            self.add_agent(
                agent.agent_id, agent.hostname, agent.attributes, agent.total, agent.total, agent.unavailable
            )
        for fw in sync.frameworks:
            self.add_framework(fw)
        for held in sync.held:
            if held.framework_id in self.frameworks and held.agent_id in self.agents:
                self.allocate(held.framework_id, held.agent_id, held.resources)
        keep_parks = self._wanted() == before_wanted
        for agent_id, entry in self.agents.items():
            old = before_agents.get(agent_id)
            if old is None or old != entry:
                continue
            self.agents[agent_id] = old
            until = before_parked.get(agent_id)
            if keep_parks and until is not None:
                # Parked for the same slice and the same frameworks' wants: still nobody's until then.
                self.parked[agent_id] = until
                self._ready.discard(agent_id)
        if keep_parks:
            self._wakeups = before_wakeups  # entries of agents no longer parked are skipped when popped

    def _wanted(self) -> dict[str, OfferFilters]:
        """What a park depends on of the frameworks: who may be offered anything, with which filters."""
        return {fw.framework_id: fw.filters for fw in self.frameworks.values() if not fw.suppressed}
