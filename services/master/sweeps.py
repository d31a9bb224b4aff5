"""The master's periodic sweeps: silent agents, expired offers, silent frameworks, due revocations.

Each is a function of the master's state and the time; :class:`meseta.master.service.MasterService`
runs them every ``sweep_interval``, each through :func:`guarded`. One agent, framework or task that makes
a sweep fail is logged and skipped: the sweep goes on with the others, and the next sweep runs as usual
(a master whose sweep raised used to exit, and every standby after it met the same agent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable

from meseta.master.agents import remove_agent
from meseta.master.cluster import FrameworkInfo
from meseta.master.core import MasterCore
from meseta.master.frameworks import remove_framework
from meseta.master.offers import rescind
from meseta.sdk import wire
from meseta.sdk.bus import is_transport_error

log = logging.getLogger(__name__)


async def remove_silent_agents(m: MasterCore, timeout: float) -> None:
    """Agents that missed heartbeats for ``timeout`` seconds (longer where they were told to beat
    slowly) are lost, and so are their tasks."""
    timeout = m.pacer.timeout(timeout, time.time())
    now = time.monotonic()
    for agent in [a for a in m.cluster.agents.values() if now - m.silent_since(a.heard) > timeout]:
        # Removing one awaits: the next may have been heard from (or removed) in the meantime.
        silent = time.monotonic() - m.silent_since(agent.heard)
        if m.cluster.agents.get(agent.agent_id) is agent and silent > timeout:
            try:
                await remove_agent(m, agent, f"no heartbeat for {silent:.1f} s")
            except Exception as exc:
                if is_transport_error(exc):
                    raise  # the broker, not the agent: the service's own handling applies
                log.exception("removing agent %s failed; the sweep goes on", agent.agent_id)


async def expire_offers(m: MasterCore) -> None:
    """Rescind offers past their expiry and recover their resources."""
    for offer in m.cluster.expired_offers(time.time()):
        await rescind(m, offer)


async def check_frameworks(m: MasterCore, timeout: float) -> None:
    """Silent frameworks are disconnected (no offers); past their failover timeout they are removed."""
    now = time.time()
    for fw in list(m.cluster.frameworks.values()):
        try:
            await _check_framework(m, fw, now, timeout)
        except Exception as exc:
            if is_transport_error(exc):
                raise
            log.exception("checking framework %s failed; the sweep goes on", fw.framework_id)


async def _check_framework(m: MasterCore, fw: FrameworkInfo, now: float, timeout: float) -> None:
    # last_seen is wall-clock time (people read it): the deaf spell is moved onto that clock.
    last_seen = max(fw.last_seen, now - (time.monotonic() - m.deaf_until))
    if fw.disconnected_at is None and now - last_seen > timeout:
        fw.disconnected_at = now
        log.warning(
            "framework %s disconnected; it keeps its tasks for %.0f s", fw.framework_id, fw.failover_timeout
        )
        for offer_id in sorted(fw.offers):
            # A call handled while this loop awaited may have answered the offer already.
            if (offer := m.cluster.offers.get(offer_id)) is not None:
                await rescind(m, offer)
        await m.outbox.to_allocator(wire.OffersSuppressed(framework_id=fw.framework_id))
    elif fw.disconnected_at is not None and now - fw.disconnected_at > fw.failover_timeout:
        log.warning(
            "framework %s did not come back within %.0f s: removing it", fw.framework_id, fw.failover_timeout
        )
        await remove_framework(m, fw)


async def guarded(name: str, sweep: Awaitable[object]) -> None:
    """Run one sweep; a failure that is not the broker's is logged, and the next sweep runs as usual."""
    try:
        await sweep
    except Exception as exc:
        if is_transport_error(exc):
            raise
        log.exception("the %s sweep failed; it runs again at the next interval", name)


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
