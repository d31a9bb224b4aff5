"""The allocator's side: grants become offers; a restarted allocator is synced; quotas are enforced by
revocation. The master is the authority over resources: a grant it cannot honour goes back."""

from __future__ import annotations

import logging
import time

from opentelemetry import trace

from meseta.master.activity import CycleRecord
from meseta.master.cluster import ScheduledRevocation
from meseta.master.core import Call, MasterCore
from meseta.master.offers import rescind
from meseta.sdk import tracing, wire

log = logging.getLogger(__name__)


async def allocations(m: MasterCore, msg: wire.Allocations, _: Call) -> None:
    """A cycle's grants: one span per grant in its own trace, then one OFFERS per framework."""
    per_framework: dict[str, list[wire.Offer]] = {}
    for grant in msg.grants:
        # Not made current: a first round at 10,000 agents is tens of thousands of these.
        span = m.tracer.start_span(
            "master ALLOCATION",
            context=tracing.extract(grant.trace),
            kind=trace.SpanKind.CONSUMER,
            attributes={"meseta.service": "master", "meseta.message.type": msg.type},
        )
        try:
            offer = _offer(m, grant, span)
        finally:
            span.end()
        if offer is not None:
            per_framework.setdefault(offer.framework_id, []).append(offer)
    await m.outbox.flush_recovered()
    for framework_id, offers in per_framework.items():
        await m.outbox.to_framework(
            framework_id, wire.Offers(framework_id=framework_id, offers=tuple(offers))
        )


def _offer(m: MasterCore, grant: wire.Grant, span: trace.Span) -> wire.Offer | None:
    """Turn a grant into an outstanding offer, or send it back when it is stale; the offer carries the
    grant's span as its trace context."""
    agent = m.cluster.agents.get(grant.agent_id)
    fw = m.cluster.frameworks.get(grant.framework_id)
    gpus = grant.resources.gpus
    # The master enforces standing filters too: an allocator with an older view must not leak offers.
    if (
        agent is None
        or fw is None
        or grant.agent_id in m.cluster.drains  # granted before the allocator heard of the drain
        or not grant.resources.fits_in(agent.free)
        or not fw.filters.admits(agent.hostname, agent.attributes, grant.resources)
        or (gpus > 0 and len(agent.free_gpus(gpus)) < gpus)
    ):
        log.info("stale allocation of %s to %s sent back", grant.agent_id, grant.framework_id)
        m.outbox.recover_later(grant.framework_id, grant.agent_id, grant.resources)
        return None
    now = time.time()
    offer = wire.Offer(
        offer_id=wire.new_id("offer"),
        framework_id=fw.framework_id,
        agent_id=agent.agent_id,
        hostname=agent.hostname,
        resources=grant.resources,
        attributes=agent.attributes,
        gpu_ids=agent.free_gpus(gpus) if gpus > 0 else (),
        allocated_at=grant.allocated_at,
        expires_at=now + m.offer_timeout,
        trace=tracing.inject({}, trace.set_span_in_context(span)),
    )
    m.cluster.add_offer(offer)
    fw.stats.offers_sent += 1
    m.meter.offer("sent", fw.framework_id)
    m.activity.offered(CycleRecord(offer.offer_id, fw.framework_id, agent.agent_id, grant.allocated_at, now))
    span.set_attributes(
        {
            "meseta.offer_id": offer.offer_id,
            "meseta.framework_id": fw.framework_id,
            "meseta.agent_id": agent.agent_id,
        }
    )
    return offer


async def allocator_started(m: MasterCore, msg: wire.AllocatorStarted, _: Call) -> None:
    log.info("an allocator started: sending it the master's view")
    await m.outbox.sync_allocator(m.cluster.state_sync)


async def revocation(m: MasterCore, msg: wire.Revocation, _: Call) -> None:
    """Take resources back for a role under its quota: outstanding offers first, then tasks, which are
    killed once the framework's grace period is over (:func:`meseta.master.sweeps.kill_revoked`)."""
    fw = m.cluster.frameworks.get(msg.framework_id)
    if fw is None or msg.agent_id not in m.cluster.agents:
        return
    need = msg.resources
    for offer_id in sorted(fw.offers):
        offer = m.cluster.offers.get(offer_id)
        if offer is not None and offer.agent_id == msg.agent_id and not need.is_empty():
            await rescind(m, offer)
            need = need.shortfall(offer.resources)
    if need.is_empty():
        return
    victims: list[str] = []
    live = [
        t
        for t in m.cluster.tasks.values()
        if t.framework_id == fw.framework_id
        and t.agent_id == msg.agent_id
        and t.state != wire.TaskState.KILLING
    ]
    for task in sorted(live, key=lambda t: (-t.resources.cpus, t.task_id)):
        if need.is_empty():
            break
        victims.append(task.task_id)
        task.state = wire.TaskState.KILLING
        need = need.shortfall(task.resources)
    if not victims:
        return
    deadline = time.time() + m.revocation_grace
    m.cluster.revocations.append(ScheduledRevocation(deadline, fw.framework_id, tuple(victims)))
    log.info(
        "revoking %s of %s on %s for role %s in %.1f s",
        victims,
        fw.framework_id,
        msg.agent_id,
        msg.for_role,
        m.revocation_grace,
    )
    notice = wire.RevocationNotice(
        framework_id=fw.framework_id,
        agent_id=msg.agent_id,
        task_ids=tuple(victims),
        grace_seconds=m.revocation_grace,
        deadline=deadline,
    )
    await m.outbox.to_framework(fw.framework_id, notice)
