"""Draining agents and maintenance windows: an operator takes an agent out of service without LOST tasks.

A drained agent gets no new offers (the allocator keeps its accounting but offers none of it), its
outstanding offers are rescinded, and each framework with tasks there hears a DRAIN notice with the
deadline (Mesos's inverse offers, Nomad's drain deadline). At the deadline the tasks still running are
killed with reason AGENT_DRAINED, with their kill grace; the agent shows DRAINING until it runs nothing,
then DRAINED. Undraining offers it again. A maintenance window drains its agents when it starts (deadline
``drain_seconds`` later) and undrains them when it ends. Drains and windows are kept in etcd before
anyone is told, so a new leader goes on with them.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from meseta.master.cluster import Cluster, Drain, Window
from meseta.master.core import MasterCore
from meseta.master.offers import rescind
from meseta.sdk import wire

log = logging.getLogger(__name__)

AgentState = Literal["ACTIVE", "DRAINING", "DRAINED"]


def state_of(cluster: Cluster, agent_id: str) -> AgentState:
    """ACTIVE, DRAINING (drained, tasks still there) or DRAINED (drained and empty)."""
    if agent_id not in cluster.drains:
        return "ACTIVE"
    agent = cluster.agents.get(agent_id)
    return "DRAINING" if agent is not None and agent.tasks else "DRAINED"


async def drain(m: MasterCore, agent_id: str, deadline_seconds: float, window: str | None = None) -> Drain:
    """Drain an agent (again: the new deadline replaces the old one)."""
    now = time.time()
    earlier = m.cluster.drains.get(agent_id)
    since = earlier.since if earlier is not None else now
    entry = Drain(since=since, deadline=now + deadline_seconds, window=window)
    await m.registry.save_drain(agent_id, entry.as_json())  # kept before anyone is told
    m.cluster.drains[agent_id] = entry
    m.cluster.events.emit("AGENT_DRAINING", agent_id=agent_id, deadline=entry.deadline, window=window)
    log.warning("agent %s drains: its tasks are killed in %.0f s", agent_id, deadline_seconds)
    await m.outbox.to_allocator(wire.AgentAvailability(agent_id=agent_id, available=False))
    for offer in [o for o in m.cluster.offers.values() if o.agent_id == agent_id]:
        await rescind(m, offer)
    agent = m.cluster.agents.get(agent_id)
    per_framework: dict[str, list[str]] = {}
    for framework_id, task_id in sorted(agent.tasks if agent is not None else ()):
        if not wire.is_executor_task_id(task_id):
            per_framework.setdefault(framework_id, []).append(task_id)
    for framework_id, task_ids in per_framework.items():
        if framework_id in m.cluster.frameworks:
            notice = wire.DrainNotice(
                framework_id=framework_id,
                agent_id=agent_id,
                task_ids=tuple(task_ids),
                deadline=entry.deadline,
            )
            await m.outbox.to_framework(framework_id, notice)
    return entry


async def undrain(m: MasterCore, agent_id: str) -> bool:
    """Offer a drained agent again; False if it was not drained."""
    if agent_id not in m.cluster.drains:
        return False
    await m.registry.remove_drain(agent_id)
    del m.cluster.drains[agent_id]
    m.cluster.events.emit("AGENT_ACTIVE", agent_id=agent_id)
    log.warning("agent %s is back in service", agent_id)
    await m.outbox.to_allocator(wire.AgentAvailability(agent_id=agent_id, available=True))
    return True


async def schedule(m: MasterCore, window: Window) -> None:
    """Add (or replace) a maintenance window; the sweep starts and ends it."""
    await m.registry.save_window(window.window_id, window.as_json())
    m.cluster.maintenance[window.window_id] = window


async def unschedule(m: MasterCore, window_id: str) -> bool:
    """Cancel a window; agents it drains are undrained. False if there is no such window."""
    # Gone from the schedule before anything awaits: a sweep meanwhile drained the agents again, and the
    # window then went with their drains left behind (seen in a fresh-clone make test).
    window = m.cluster.maintenance.pop(window_id, None)
    if window is None:
        return False
    for agent_id in window.agent_ids:
        entry = m.cluster.drains.get(agent_id)
        if entry is not None and entry.window == window_id:
            await undrain(m, agent_id)
    await m.registry.remove_window(window_id)
    return True


async def sweep(m: MasterCore) -> None:
    """Start and end maintenance windows; kill what drained agents still run past their deadline."""
    now = time.time()
    for window in list(m.cluster.maintenance.values()):
        if now >= window.end:
            log.info("maintenance window %s ended", window.window_id)
            await unschedule(m, window.window_id)
        elif now >= window.start:
            for agent_id in window.agent_ids:
                # Each drain awaits: the window may have been cancelled meanwhile.
                if m.cluster.maintenance.get(window.window_id) is window and agent_id not in m.cluster.drains:
                    remaining = window.start + window.drain_seconds - now
                    await drain(m, agent_id, max(0.0, remaining), window=window.window_id)
    for agent_id, entry in list(m.cluster.drains.items()):
        if entry.window is not None and entry.window not in m.cluster.maintenance:
            # Its window is gone (cancelled, or ended under another leader): so is the drain.
            if m.cluster.drains.get(agent_id) is entry:
                await undrain(m, agent_id)
            continue
        agent = m.cluster.agents.get(agent_id)
        if now < entry.deadline or agent is None:
            continue
        for key in sorted(agent.tasks):
            task = m.cluster.tasks.get(key)
            if task is None or task.state == wire.TaskState.KILLING or wire.is_executor_task_id(key[1]):
                continue
            task.state = wire.TaskState.KILLING
            await m.outbox.kill_on(agent_id, key[0], key[1], wire.StatusReason.AGENT_DRAINED)
