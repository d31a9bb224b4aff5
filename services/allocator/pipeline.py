"""One allocation cycle: feasibility -> quota -> policy -> revocation. Pure: state in, plan out.

For each agent with an allocatable slice (the state keeps an index, so idle agents cost nothing):
  1. feasibility: frameworks not suppressed, not decline-filtered for that agent, whose standing filters
     (attributes, hostnames, minimum size) admit the slice; and the slice meets the global minimum;
  2. quota: if any candidate's role is below its guarantee, only those candidates compete;
  3. policy: the policy picks the winner, who is granted the whole slice.
Then, for every role still below its guarantee with demand, revocations are planned from frameworks
whose roles are above theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meseta.allocator.policy import Policy, View, dominant_share
from meseta.allocator.state import AgentEntry, AllocatorState, FrameworkEntry
from meseta.sdk.wire import Resources


@dataclass(frozen=True)
class Grant:
    """Offer ``resources`` on ``agent_id`` to ``framework_id``."""

    framework_id: str
    agent_id: str
    resources: Resources


@dataclass(frozen=True)
class Revoke:
    """Take ``resources`` on ``agent_id`` back from ``framework_id`` for ``for_role``."""

    framework_id: str
    agent_id: str
    resources: Resources
    for_role: str


@dataclass
class Plan:
    """The outcome of one cycle."""

    grants: list[Grant] = field(default_factory=list)
    revocations: list[Revoke] = field(default_factory=list)
    truncated: bool = False
    """The cycle stopped at ``max_grants``: more agents wait for the next one."""


def feasible(state: AllocatorState, fw: FrameworkEntry, agent: AgentEntry, now: float) -> bool:
    """Whether ``fw`` may be offered ``agent``'s slice now."""
    if state.filtered(fw.framework_id, agent.agent_id, now):
        return False
    return fw.filters.admits(agent.hostname, agent.attributes, agent.available)


def plan_cycle(
    state: AllocatorState,
    policy: Policy,
    now: float,
    min_offer: Resources | None = None,
    max_grants: int | None = None,
) -> Plan:
    """The plan for this cycle; the state is read, not changed (expired filters and parked agents aside).

    ``max_grants`` bounds one cycle's work, so ten thousand free agents do not hold the event loop (and
    the leader lease's refreshes) for seconds: the rest is granted by the next cycles.
    """
    plan = Plan()
    eligible = [fw for fw in state.frameworks.values() if not fw.suppressed]
    view = View(state, {fw.framework_id: fw.allocated for fw in state.frameworks.values()}, state.role_held())
    floor = min_offer.model_copy(update={"ports": ()}) if min_offer is not None else None
    if eligible:
        for agent_id in state.ready_agents(now):
            if max_grants is not None and len(plan.grants) >= max_grants:
                plan.truncated = True
                break
            agent = state.agents[agent_id]
            if floor is not None and not floor.fits_in(agent.available):
                continue
            candidates = [fw for fw in eligible if feasible(state, fw, agent, now)]
            if not candidates:
                state.park(agent_id, min(state.filter_expiry(fw.framework_id, agent_id) for fw in eligible))
                continue
            owed = [fw for fw in candidates if _below_quota(state, view, fw.role)]
            winner = policy.pick(owed or candidates, view)
            plan.grants.append(Grant(winner.framework_id, agent_id, agent.available))
            view.held[winner.framework_id] += agent.available
            view.role_held[winner.role] = view.role_held.get(winner.role, Resources()) + agent.available
    granted = {state.frameworks[g.framework_id].role for g in plan.grants}
    plan.revocations = _plan_revocations(state, view, eligible, granted, now)
    return plan


def _below_quota(state: AllocatorState, view: View, role: str) -> bool:
    quota = state.role(role).quota
    return not quota.is_empty() and not quota.shortfall(view.role_held.get(role, Resources())).is_empty()


def _plan_revocations(
    state: AllocatorState, view: View, eligible: list[FrameworkEntry], granted: set[str], now: float
) -> list[Revoke]:
    state.revoking = {k: v for k, v in state.revoking.items() if v.until > now}
    revocations: list[Revoke] = []
    wanting = {fw.role for fw in eligible}
    for role in sorted(wanting):
        quota = state.role(role).quota
        if quota.is_empty():
            continue
        in_flight = [p.resources for p in state.revoking.values() if p.role == role]
        deficit = quota.shortfall(view.role_held.get(role, Resources()))
        for pending in in_flight:
            deficit = deficit.shortfall(pending)
        if deficit.is_empty():
            continue
        if role in granted:
            continue  # it is being served; take nothing from others yet
        victims = [
            fw for fw in state.frameworks.values() if fw.role != role and _above_quota(state, view, fw.role)
        ]
        victims.sort(
            key=lambda fw: (-dominant_share(view.held[fw.framework_id], state.total), fw.framework_id)
        )
        # A victim role gives up only what it holds beyond its own guarantee.
        excess = {fw.role: view.role_held[fw.role].shortfall(state.role(fw.role).quota) for fw in victims}
        for fw in victims:
            for agent_id, held in sorted(fw.by_agent.items()):
                if deficit.is_empty():
                    break
                if (fw.framework_id, agent_id) in state.revoking:
                    continue
                take = held.clamp(deficit).clamp(excess[fw.role])
                if take.is_empty():
                    continue
                revocations.append(Revoke(fw.framework_id, agent_id, take, role))
                deficit = deficit.shortfall(take)
                excess[fw.role] = excess[fw.role].shortfall(take)
    return revocations


def _above_quota(state: AllocatorState, view: View, role: str) -> bool:
    """Whether a role holds more than its guarantee in some resource (roles without quota: anything)."""
    held = view.role_held.get(role, Resources())
    return not held.shortfall(state.role(role).quota).is_empty()
