"""The master's periodic sweeps: silent agents, expired offers, silent frameworks, due revocations.

Each is a function of the master's state and the time; :class:`meseta.master.service.MasterService`
runs them every ``sweep_interval``.
"""

from __future__ import annotations

import logging
import time

from meseta.master.agents import remove_agent
from meseta.master.core import MasterCore
from meseta.master.frameworks import remove_framework
from meseta.master.offers import rescind
from meseta.sdk import wire

log = logging.getLogger(__name__)


async def remove_silent_agents(m: MasterCore, timeout: float) -> None:
    """Agents that missed heartbeats for ``timeout`` seconds (longer where they were told to beat
    slowly) are lost, and so are their tasks."""
    now = time.time()
    timeout = m.pacer.timeout(timeout, now)
    for agent in [a for a in m.cluster.agents.values() if now - a.last_seen > timeout]:
        # Removing one awaits: the next may have been heard from (or removed) in the meantime.
        silent = time.time() - agent.last_seen
        if m.cluster.agents.get(agent.agent_id) is agent and silent > timeout:
            await remove_agent(m, agent, f"no heartbeat for {silent:.1f} s")


async def expire_offers(m: MasterCore) -> None:
    """Rescind offers past their expiry and recover their resources."""
    for offer in m.cluster.expired_offers(time.time()):
        await rescind(m, offer)


async def check_frameworks(m: MasterCore, timeout: float) -> None:
    """Silent frameworks are disconnected (no offers); past their failover timeout they are removed."""
    now = time.time()
    for fw in list(m.cluster.frameworks.values()):
        if fw.disconnected_at is None and now - fw.last_seen > timeout:
            fw.disconnected_at = now
            log.warning(
                "framework %s disconnected; it keeps its tasks for %.0f s",
                fw.framework_id,
                fw.failover_timeout,
            )
            for offer_id in sorted(fw.offers):
                # A call handled while this loop awaited may have answered the offer already.
                if (offer := m.cluster.offers.get(offer_id)) is not None:
                    await rescind(m, offer)
            await m.outbox.to_allocator(wire.OffersSuppressed(framework_id=fw.framework_id))
        elif fw.disconnected_at is not None and now - fw.disconnected_at > fw.failover_timeout:
            log.warning(
                "framework %s did not come back within %.0f s: removing it",
                fw.framework_id,
                fw.failover_timeout,
            )
            await remove_framework(m, fw)


async def kill_revoked(m: MasterCore) -> None:
    """Kill the tasks whose revocation grace period is over."""
    now = time.time()
    due = [r for r in m.cluster.revocations if r.deadline <= now]
    m.cluster.revocations = [r for r in m.cluster.revocations if r.deadline > now]
    for revocation in due:
        for task_id in revocation.task_ids:
            task = m.cluster.tasks.get((revocation.framework_id, task_id))
            if task is not None:
                await m.outbox.kill_on(task.agent_id, task.framework_id, task_id, wire.StatusReason.REVOKED)
