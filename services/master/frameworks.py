"""Frameworks and their calls: subscription and failover, reconciliation, kills, acknowledgements,
offer suppression and filters, messages to executors, teardown."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from meseta.master.cluster import FrameworkInfo, hash_secret
from meseta.master.core import Call, MasterCore
from meseta.master.offers import rescind
from meseta.sdk import wire
from meseta.sdk.wire import ErrorCode

log = logging.getLogger(__name__)


async def subscribe(m: MasterCore, msg: wire.Subscribe, ctx: Call) -> None:
    if not ctx.reply_to:
        raise ValueError("SUBSCRIBE needs an AMQP reply_to queue for its answer")
    if msg.framework_id is not None:
        await _resubscribe(m, msg, ctx)
        return
    if m.authority.enforcing:
        # The dispatcher let only a framework principal's SUBSCRIBE through.
        assert ctx.principal is not None
        refusal = m.authority.acl.refusal(ctx.principal, msg.role, msg.weight, msg.priority)
        if refusal is not None:
            error = wire.Error(
                framework_id="", code=ErrorCode.UNAUTHORIZED, message=refusal, correlation_id=msg.message_id
            )
            log.warning("refused SUBSCRIBE of %s: %s", msg.name, refusal)
            await m.outbox.to_caller(ctx.reply_to, error)
            return
    secret = secrets.token_urlsafe(24)
    fw = FrameworkInfo(
        # A principal's frameworks are named after it: its broker permissions let it read their queues.
        wire.new_id(ctx.principal or "fw"),
        msg.name,
        msg.role,
        msg.weight,
        msg.priority,
        msg.filters,
        subscribed_at=time.time(),
        secret_hash=hash_secret(secret),
        failover_timeout=msg.failover_timeout,
        principal=ctx.principal,
        partition_aware=wire.Capability.PARTITION_AWARE in msg.capabilities,
    )
    framework_id = fw.framework_id
    await m.registry.save_framework(framework_id, fw.registry_entry())
    # The master declares the framework's queue before any offer can be routed to it.
    await m.outbox.open_framework_queue(framework_id)
    m.cluster.frameworks[framework_id] = fw
    m.cluster.events.emit("FRAMEWORK_ADDED", framework_id=framework_id, name=msg.name, role=msg.role)
    log.info("framework %s (%s, role %s) subscribed", framework_id, msg.name, msg.role)
    answer = wire.Subscribed(
        framework_id=framework_id, secret=secret, master_epoch=m.epoch, correlation_id=msg.message_id
    )
    await m.outbox.to_caller(ctx.reply_to, answer)
    await m.outbox.to_allocator(fw.as_event())


async def _resubscribe(m: MasterCore, msg: wire.Subscribe, ctx: Call) -> None:
    """A framework comes back (failover): same id, same secret, its tasks and queued updates intact."""
    assert msg.framework_id is not None
    fw = m.cluster.frameworks.get(msg.framework_id)
    if fw is None or not fw.holds_secret(msg.secret):
        code = ErrorCode.UNKNOWN_FRAMEWORK if fw is None else ErrorCode.UNAUTHORIZED
        text = "no such framework (past its failover timeout?)" if fw is None else "wrong secret"
        error = wire.Error(
            framework_id=msg.framework_id, code=code, message=text, correlation_id=msg.message_id
        )
        await m.outbox.to_caller(ctx.reply_to, error)
        return
    fw.failover_timeout = msg.failover_timeout
    fw.partition_aware = wire.Capability.PARTITION_AWARE in msg.capabilities
    await m.registry.save_framework(fw.framework_id, fw.registry_entry())
    await m.outbox.open_framework_queue(fw.framework_id)
    await reconnect(m, fw)
    log.info("framework %s re-subscribed with %d tasks", fw.framework_id, len(fw.tasks))
    answer = wire.Subscribed(
        framework_id=fw.framework_id,
        secret=msg.secret or "",
        master_epoch=m.epoch,
        correlation_id=msg.message_id,
    )
    await m.outbox.to_caller(ctx.reply_to, answer)


async def framework_heartbeat(m: MasterCore, msg: wire.FrameworkHeartbeat, _: Call) -> None:
    fw = m.cluster.frameworks.get(msg.framework_id)
    if fw is not None and fw.disconnected_at is not None:
        await reconnect(m, fw)


async def reconnect(m: MasterCore, fw: FrameworkInfo) -> None:
    """A disconnected framework is heard from again: offers resume (unless it suppressed them)."""
    fw.last_seen = time.time()
    if fw.disconnected_at is None:
        return
    fw.disconnected_at = None
    if not fw.suppressed:
        await m.outbox.to_allocator(wire.OffersRevived(framework_id=fw.framework_id))


async def reconcile(m: MasterCore, msg: wire.Reconcile, ctx: Call) -> None:
    """Answer with each task's state as the master knows it: UNREACHABLE on a lost agent that may return;
    for a task it has never heard of, UNKNOWN to a partition-aware framework, LOST to the others."""
    if not await m.known(msg, ctx):
        return
    fw = m.cluster.frameworks[msg.framework_id]
    unreachable = {tid for fid, tid in m.cluster.unreachable_tasks if fid == fw.framework_id}
    task_ids = msg.task_ids or tuple(sorted({tid for _, tid in fw.tasks} | unreachable))
    unknown = wire.TaskState.UNKNOWN if fw.partition_aware else wire.TaskState.LOST
    statuses = []
    for task_id in task_ids:
        key = (fw.framework_id, task_id)
        task = m.cluster.tasks.get(key) or m.cluster.unreachable_tasks.get(key)
        statuses.append(
            wire.TaskStatus(
                task_id=task_id,
                state=task.state if task is not None else unknown,
                agent_id=task.agent_id if task is not None else None,
                reason=wire.StatusReason.RECONCILIATION,
                message="known to the master" if task is not None else "unknown to the master",
            )
        )
    await m.outbox.statuses(fw.framework_id, statuses)


async def kill(m: MasterCore, msg: wire.Kill, ctx: Call) -> None:
    task = m.cluster.tasks.get((msg.framework_id, msg.task_id))
    if task is None:
        await m.refuse(msg.framework_id, msg, ErrorCode.UNKNOWN_TASK, f"no live task {msg.task_id}", ctx)
        return
    task.state = wire.TaskState.KILLING
    await m.outbox.kill_on(
        task.agent_id, msg.framework_id, msg.task_id, wire.StatusReason.KILLED_BY_FRAMEWORK, msg.grace_seconds
    )


async def acknowledge(m: MasterCore, msg: wire.Acknowledge, _: Call) -> None:
    """The framework has these updates: one ACKNOWLEDGE_UPDATES per agent that still exists."""
    per_agent: dict[str, list[str]] = {}
    for ack in msg.acks:
        if ack.agent_id in m.cluster.agents:
            per_agent.setdefault(ack.agent_id, []).append(ack.uuid)
    for agent_id, uuids in per_agent.items():
        # The agent forgets only this framework's updates of these uuids: a framework cannot acknowledge
        # (and so erase) another's.
        await m.outbox.acknowledge_updates(agent_id, msg.framework_id, uuids)


async def suppress(m: MasterCore, msg: wire.Suppress, ctx: Call) -> None:
    if await m.known(msg, ctx):
        fw = m.cluster.frameworks[msg.framework_id]
        fw.suppressed = True
        await m.registry.save_framework(fw.framework_id, fw.registry_entry())
        await m.outbox.to_allocator(wire.OffersSuppressed(framework_id=msg.framework_id))


async def revive(m: MasterCore, msg: wire.Revive, ctx: Call) -> None:
    if await m.known(msg, ctx):
        fw = m.cluster.frameworks[msg.framework_id]
        fw.suppressed = False
        # The registry's write and the allocator's notice together, not one after the other: the etcd
        # round trip was on the path from a revive to its first offer. Both are done before the call is
        # acknowledged, so a master lost in between leaves the call to its successor, which does both.
        await asyncio.gather(
            m.registry.save_framework(fw.framework_id, fw.registry_entry()),
            m.outbox.to_allocator(wire.OffersRevived(framework_id=msg.framework_id)),
        )


async def set_filters(m: MasterCore, msg: wire.SetFilters, ctx: Call) -> None:
    if not await m.known(msg, ctx):
        return
    fw = m.cluster.frameworks[msg.framework_id]
    fw.filters = msg.filters
    # Durable before effective: a restart right after this call still knows the filters.
    await m.registry.save_framework(fw.framework_id, fw.registry_entry())
    await m.outbox.to_allocator(wire.FiltersUpdated(framework_id=fw.framework_id, filters=msg.filters))
    # Outstanding offers the new filters reject are rescinded, so the framework never holds them.
    for offer_id in list(fw.offers):
        if (offer := m.cluster.offers.get(offer_id)) is None:
            continue  # answered while this loop awaited
        agent = m.cluster.agents.get(offer.agent_id)
        if agent is not None and not msg.filters.admits(agent.hostname, agent.attributes, offer.resources):
            await rescind(m, offer)


async def teardown(m: MasterCore, msg: wire.Teardown, ctx: Call) -> None:
    if await m.known(msg, ctx):
        await remove_framework(m, m.cluster.frameworks[msg.framework_id])


async def remove_framework(m: MasterCore, fw: FrameworkInfo) -> None:
    """Forget a framework: rescind its offers, kill its tasks, delete it from the registry."""
    del m.cluster.frameworks[fw.framework_id]
    m.cluster.events.emit("FRAMEWORK_REMOVED", framework_id=fw.framework_id, name=fw.name)
    for offer_id in list(fw.offers):
        m.cluster.remove_offer(offer_id)
    live = [m.cluster.tasks[key] for key in fw.tasks if key in m.cluster.tasks]
    # The allocator gives back everything the framework held when it hears FRAMEWORK_REMOVED.
    await m.outbox.to_allocator(wire.FrameworkRemoved(framework_id=fw.framework_id))
    for task in live:
        await m.outbox.kill_on(
            task.agent_id, fw.framework_id, task.task_id, wire.StatusReason.FRAMEWORK_REMOVED
        )
    await m.registry.remove_framework(fw.framework_id)
    await m.outbox.close_framework_queue(fw.framework_id)
    log.info("framework %s removed (%d tasks killed)", fw.framework_id, len(live))


async def send_to_executor(m: MasterCore, msg: wire.SendToExecutor, ctx: Call) -> None:
    if not await m.known(msg, ctx):
        return
    key = (msg.framework_id, wire.executor_task_id(msg.executor_id, msg.agent_id))
    if key not in m.cluster.tasks:
        text = f"no executor {msg.executor_id} of this framework runs on {msg.agent_id}"
        await m.refuse(msg.framework_id, msg, ErrorCode.UNKNOWN_TASK, text, ctx)
        return
    forward = wire.ExecutorMessage(
        agent_id=msg.agent_id, framework_id=msg.framework_id, executor_id=msg.executor_id, data=msg.data
    )
    await m.outbox.to_agent(msg.agent_id, forward)
