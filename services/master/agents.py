"""Agents: registration, heartbeats, their tasks' status updates, and their loss."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from opentelemetry import trace

from meseta.master.cluster import AgentInfo, TaskEntry, TaskKey
from meseta.master.core import Call, MasterCore
from meseta.sdk import tracing, wire

log = logging.getLogger(__name__)

MARK_EVERY = 2.0
"""Seconds between MARK_LAUNCHES to one agent while its overdue launches are unaccounted for (one may be
lost with a queue, as a launch may)."""


async def register_agent(m: MasterCore, msg: wire.RegisterAgent, _: Call) -> None:
    if msg.agent_id in m.cluster.gone_agents:
        # Marked gone by an operator: its frameworks were told its tasks are LOST, for good. Whatever it
        # still runs is killed, and it is not taken back (a machine back in service gets a new agent id).
        log.warning("agent %s was marked gone: its %d tasks are killed, it is not registered",
                    msg.agent_id, len(msg.running_tasks))  # fmt: skip
        for task in msg.running_tasks:
            await m.outbox.kill_on(
                msg.agent_id, task.framework_id, task.task_id, wire.StatusReason.AGENT_REMOVED
            )
        return
    agent = m.cluster.agents.get(msg.agent_id)
    if agent is not None:
        agent.last_seen, agent.heard = time.time(), time.monotonic()
        log.info("agent %s re-registered", msg.agent_id)
        return
    agent = AgentInfo(
        msg.agent_id, msg.hostname, dict(msg.attributes), msg.resources, time.time(), gpu_ids=msg.gpu_ids
    )
    m.cluster.add_agent(agent)
    m.pacer.observe(msg.heartbeat_interval)
    broadcast = await pace_heartbeats(m)
    if not broadcast and m.pacer.advertised > msg.heartbeat_interval:
        # Later broadcasts reach it too; this one is for the interval already in force.
        interval = wire.HeartbeatInterval(agent_id=msg.agent_id, seconds=m.pacer.advertised)
        await m.outbox.to_agent(msg.agent_id, interval)
    running = msg.running_tasks
    back: list[wire.RunningTask] = []
    if msg.agent_id in m.cluster.lost_agents:
        # Back from the dead: its frameworks were told these tasks are LOST and have replaced them
        # (whichever master told them: the set is kept in etcd, and a new leader loads it). Partition-aware
        # frameworks' tasks are the exception while within their unreachable timeout: they run on.
        back = _back_from_unreachable(m, msg.agent_id, running)
        for task in running:
            if task not in back:
                reason = wire.StatusReason.AGENT_REMOVED
                await m.outbox.kill_on(msg.agent_id, task.framework_id, task.task_id, reason)
        running = tuple(back)
        m.cluster.lost_agents.discard(msg.agent_id)
        await m.registry.agent_back(msg.agent_id)
    # A master that restarted learns the agent's running tasks from it; they hold resources.
    for task in running:
        m.cluster.add_task(
            TaskEntry(
                task.framework_id,
                task.task_id,
                agent.agent_id,
                task.resources,
                wire.TaskState.RUNNING,
                task.gpu_ids,
            )
        )
    log.info(
        "agent %s registered on %s with %s (%d tasks)",
        msg.agent_id,
        msg.hostname,
        msg.resources,
        len(running),
    )
    for framework_id in sorted({t.framework_id for t in back}):
        text = f"agent {msg.agent_id} is reachable again"
        statuses = [
            wire.TaskStatus(
                task_id=t.task_id,
                state=wire.TaskState.RUNNING,
                agent_id=msg.agent_id,
                reason=wire.StatusReason.AGENT_REREGISTERED,
                message=text,
            )
            for t in back
            if t.framework_id == framework_id
        ]
        log.info(
            "agent %s back: %d unreachable tasks of %s RUNNING again",
            msg.agent_id,
            len(statuses),
            framework_id,
        )
        await m.outbox.statuses(framework_id, statuses)
    if running:
        # Its tasks are held by frameworks: the allocator must see them as allocated, not free. One view
        # for the whole burst of agents registering again after a failover, not one per agent.
        m.outbox.sync_allocator_soon(m.cluster.state_sync)
        return
    await m.outbox.to_allocator(agent.as_event(msg.agent_id in m.cluster.drains))


def _back_from_unreachable(
    m: MasterCore, agent_id: str, running: Iterable[wire.RunningTask]
) -> list[wire.RunningTask]:
    """The running tasks of a returning agent that were UNREACHABLE and may run on (their framework is
    partition-aware and still here, and the agent is back within the unreachable timeout). Whatever else
    it had waiting is forgotten: a task that ended meanwhile reports that itself."""
    since = m.cluster.unreachable.pop(agent_id, None)
    waiting = {k: t for k, t in m.cluster.unreachable_tasks.items() if t.agent_id == agent_id}
    for key in waiting:
        del m.cluster.unreachable_tasks[key]
    if since is None:
        return []
    return [
        t
        for t in running
        if (t.framework_id, t.task_id) in waiting and t.framework_id in m.cluster.frameworks
    ]


async def heartbeat(m: MasterCore, msg: wire.Heartbeat, _: Call) -> None:
    agent = m.cluster.agents.get(msg.agent_id)
    if agent is None and msg.agent_id in m.cluster.gone_agents:
        return  # marked gone: not asked back
    if agent is None:
        # We do not know it (we restarted, or it registered before we ran): ask for its inventory.
        await m.outbox.to_agent(msg.agent_id, wire.ReregisterAgent(agent_id=msg.agent_id))
        return
    agent.last_seen, agent.heard = time.time(), time.monotonic()
    await _lost_launches(m, agent, msg)


async def _lost_launches(m: MasterCore, agent: AgentInfo, beat: wire.Heartbeat) -> None:
    """Tasks still STAGING well after their launch that the agent does not list, though it had read its
    queue past their launch, never reached it (its queue was lost with a broker node, say): LOST, their
    resources back, rather than STAGING for ever. One the agent had not read that far may be on its way
    (the heartbeat was queued through a broker outage, or the launch is): the agent is asked to mark how
    far it has read, and a later heartbeat decides. Run at every heartbeat: nothing is built unless a
    task is overdue."""
    now = time.monotonic()
    overdue = [
        (key, task.sequence)
        for key in agent.tasks
        if (task := m.cluster.tasks.get(key)) is not None
        and task.state == wire.TaskState.STAGING
        and now - task.launched >= m.launch_timeout
    ]
    if not overdue:
        return
    there = set(beat.running_tasks)
    read = beat.read.key if beat.read is not None else (-1, -1)
    missing = [(key, sequence) for key, sequence in overdue if key[1] not in there]
    gone = sorted(key for key, sequence in missing if read >= (m.epoch, sequence))
    if len(gone) < len(missing) and now - agent.marked_at >= MARK_EVERY:
        # Behind every launch sent so far in the agent's queue: once read, the agent's heartbeats say so.
        agent.marked_at = now
        mark = wire.LaunchMark(epoch=m.epoch, sequence=agent.launches_sent)
        await m.outbox.to_agent(agent.agent_id, wire.MarkLaunches(agent_id=agent.agent_id, mark=mark))
    for framework_id, task_id in gone:
        log.warning("task %s of %s never reached agent %s: LOST", task_id, framework_id, agent.agent_id)
    text = f"agent {agent.agent_id} never received the launch ({m.launch_timeout:.0f} s)"
    lost = _end_lost(m, agent.agent_id, gone, wire.StatusReason.LAUNCH_LOST, text, recover=True)
    if lost:
        await m.outbox.flush_recovered()
        for framework_id, statuses in lost.items():
            await m.outbox.statuses(framework_id, statuses)


def _end_lost(
    m: MasterCore,
    agent_id: str,
    keys: Iterable[TaskKey],
    reason: wire.StatusReason,
    text: str,
    *,
    recover: bool,
) -> dict[str, list[wire.TaskStatus]]:
    """End these tasks as LOST; with ``recover``, what they held goes back to the allocator with the next
    flush (not when their agent is gone with it). The LOST statuses to tell, by framework still known."""
    lost: dict[str, list[wire.TaskStatus]] = {}
    for key in keys:
        task = m.cluster.end_task(key)
        if task is None or task.framework_id not in m.cluster.frameworks:
            continue
        if recover:
            m.outbox.recover_later(task.framework_id, agent_id, task.resources)
        status = wire.TaskStatus(
            task_id=task.task_id, state=wire.TaskState.LOST, agent_id=agent_id, reason=reason, message=text
        )
        lost.setdefault(task.framework_id, []).append(status)
    return lost


async def status_updates(m: MasterCore, msg: wire.StatusUpdates, _: Call) -> None:
    """Apply each update (each in its own span, in its task's offer-cycle trace), give back what ended
    tasks held, forward the updates to their frameworks, and acknowledge those of frameworks that are gone
    (nobody else will, and the agent would keep them for ever)."""
    per_framework: dict[str, tuple[list[wire.TaskStatus], list[dict[str, str]]]] = {}
    orphans: list[str] = []
    alone = len(msg.updates) == 1
    # A master that makes no span forwards each update in the trace it came in (the agent's).
    spans = not isinstance(m.tracer, trace.NoOpTracer)
    for update in msg.updates:
        task = m.cluster.tasks.get((update.framework_id, update.status.task_id))
        if task is not None and task.agent_id != update.agent_id:
            # Only the agent a task runs on reports on it (the batch's agent is its sender, broker-checked
            # outside development mode): anything else is a forgery or a confused agent.
            log.warning(
                "status update for %s of %s from agent %s ignored: the task runs on %s",
                update.status.task_id,
                update.framework_id,
                update.agent_id,
                task.agent_id,
            )
            continue
        span: trace.Span
        if not spans:
            span = trace.INVALID_SPAN  # not used
        elif alone:
            # A batch of one comes in its task's trace (the agent sends it so): the consumer span is its own.
            span = trace.get_current_span()
            span.update_name("master STATUS_UPDATE")
            span.set_attributes(_attributes(update))
        else:
            # Not made current, attributes given at the start: a launch burst is thousands of these.
            span = m.tracer.start_span(
                "master STATUS_UPDATE",
                context=tracing.extract(update.trace),
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "meseta.service": "master",
                    "meseta.message.type": msg.type,
                    **_attributes(update),
                },
            )
        try:
            _apply(m, update, task)
        finally:
            if not alone and spans:
                span.end()
        if update.framework_id in m.cluster.frameworks:
            statuses, traces = per_framework.setdefault(update.framework_id, ([], []))
            statuses.append(update.status)
            # Forwarded in this span's trace (the task's offer cycle), also when it leaves in a batch.
            traces.append(tracing.inject_span({}, span) if spans else update.trace)
        else:
            orphans.append(update.status.uuid)
    await m.outbox.flush_recovered()
    for framework_id, (statuses, traces) in per_framework.items():
        await m.outbox.statuses(framework_id, statuses, traces)
    if orphans:
        await m.outbox.acknowledge_updates(msg.agent_id, None, orphans)


def _apply(m: MasterCore, update: wire.StatusUpdate, task: TaskEntry | None) -> None:
    """The task's new state (``task``: the master's entry, looked up by the caller); what an ended task
    held goes back to the allocator with the next flush."""
    if task is None:
        return
    status = update.status
    task.state = status.state
    task.healthy, task.ready = status.healthy, status.ready
    if status.state.terminal:
        m.cluster.end_task((update.framework_id, status.task_id))
        if update.framework_id in m.cluster.frameworks:
            m.outbox.recover_later(update.framework_id, task.agent_id, task.resources)


def _attributes(update: wire.StatusUpdate) -> dict[str, str]:
    return {
        "meseta.task_id": update.status.task_id,
        "meseta.task_state": update.status.state.value,
        "meseta.agent_id": update.agent_id,
        "meseta.framework_id": update.framework_id,
    }


async def remove_agent(m: MasterCore, agent: AgentInfo, why: str, *, partition: bool = True) -> None:
    """Forget an agent: rescind its offers, report its tasks LOST, tell frameworks and allocator. With
    ``partition`` (it fell silent, rather than being marked gone), partition-aware frameworks' tasks are
    UNREACHABLE instead: they may come back with the agent."""
    log.warning("agent %s lost: %s", agent.agent_id, why)
    # Durable before anyone is told: a master that dies after telling frameworks these tasks are LOST
    # leaves the next one knowing to kill them if the agent returns (else they would run twice).
    await m.registry.agent_lost(agent.agent_id, time.time())
    for offer in [o for o in m.cluster.offers.values() if o.agent_id == agent.agent_id]:
        m.cluster.remove_offer(offer.offer_id)
        rescind = wire.Rescind(framework_id=offer.framework_id, offer_id=offer.offer_id)
        await m.outbox.to_framework(offer.framework_id, rescind)
    text = f"agent {agent.agent_id} lost: {why}"
    aware = sorted(k for k in agent.tasks if partition and _partition_aware(m, k[0]))
    others = sorted(k for k in agent.tasks if k not in set(aware))
    lost = _end_lost(m, agent.agent_id, others, wire.StatusReason.AGENT_REMOVED, text, recover=False)
    if aware:
        m.cluster.unreachable[agent.agent_id] = time.time()
        until = f"; RUNNING again if it returns within {m.unreachable_timeout:g} s"
        for framework_id, statuses in _end_unreachable(m, aware, text + until).items():
            lost.setdefault(framework_id, []).extend(statuses)
    for framework_id, statuses in lost.items():
        await m.outbox.statuses(framework_id, statuses)
    m.cluster.remove_agent(agent.agent_id)
    m.cluster.lost_agents.add(agent.agent_id)
    await m.outbox.to_allocator(wire.AgentRemoved(agent_id=agent.agent_id))
    await pace_heartbeats(m)
    for framework_id in sorted(lost):
        await m.outbox.to_framework(
            framework_id, wire.Failure(framework_id=framework_id, agent_id=agent.agent_id)
        )


async def mark_gone(m: MasterCore, agent_id: str) -> bool:
    """An operator says the agent is gone for good (Mesos's MARK_AGENT_GONE): its tasks are LOST now, and
    it is never registered again. False if the master knows no such agent (registered or lost)."""
    agent = m.cluster.agents.get(agent_id)
    if agent is None and agent_id not in m.cluster.lost_agents:
        return False
    await m.registry.agent_gone(agent_id, time.time())  # kept before anyone is told
    m.cluster.gone_agents.add(agent_id)
    if agent is not None:
        await remove_agent(m, agent, "marked gone by an operator", partition=False)
    m.cluster.unreachable.pop(agent_id, None)
    text = f"agent {agent_id} marked gone by an operator"
    for framework_id, statuses in _gone(m, agent_id, wire.StatusReason.AGENT_REMOVED, text).items():
        await m.outbox.statuses(framework_id, statuses)
    return True


def _gone(
    m: MasterCore, agent_id: str, reason: wire.StatusReason, text: str
) -> dict[str, list[wire.TaskStatus]]:
    """Forget the agent's unreachable tasks: GONE, the statuses to tell, by (known) framework."""
    told: dict[str, list[wire.TaskStatus]] = {}
    for key in sorted(k for k, t in m.cluster.unreachable_tasks.items() if t.agent_id == agent_id):
        task = m.cluster.unreachable_tasks.pop(key)
        status = wire.TaskStatus(
            task_id=task.task_id, state=wire.TaskState.GONE, agent_id=agent_id, reason=reason, message=text
        )
        if task.framework_id in m.cluster.frameworks:
            told.setdefault(task.framework_id, []).append(status)
    return told


def _partition_aware(m: MasterCore, framework_id: str) -> bool:
    fw = m.cluster.frameworks.get(framework_id)
    return fw is not None and fw.partition_aware


def _end_unreachable(m: MasterCore, keys: Iterable[TaskKey], text: str) -> dict[str, list[wire.TaskStatus]]:
    """Move these tasks to ``unreachable_tasks`` (UNREACHABLE): the statuses to tell, by framework."""
    told: dict[str, list[wire.TaskStatus]] = {}
    for key in keys:
        task = m.cluster.end_task(key)
        if task is None:
            continue
        m.cluster.finished.pop(key, None)  # not ended: it may come back
        task.state = wire.TaskState.UNREACHABLE
        m.cluster.unreachable_tasks[key] = task
        status = wire.TaskStatus(
            task_id=task.task_id,
            state=wire.TaskState.UNREACHABLE,
            agent_id=task.agent_id,
            reason=wire.StatusReason.AGENT_UNREACHABLE,
            message=text,
        )
        told.setdefault(task.framework_id, []).append(status)
    return told


async def expire_unreachable(m: MasterCore) -> None:
    """Unreachable agents past the unreachable timeout: their tasks are GONE (killed if they return)."""
    now = time.time()
    for agent_id, since in sorted(m.cluster.unreachable.items()):
        if now - since <= m.unreachable_timeout:
            continue
        del m.cluster.unreachable[agent_id]
        text = f"agent {agent_id} unreachable for more than {m.unreachable_timeout:g} s: GONE"
        log.warning("%s", text)
        for framework_id, statuses in _gone(m, agent_id, wire.StatusReason.AGENT_UNREACHABLE, text).items():
            await m.outbox.statuses(framework_id, statuses)


async def pace_heartbeats(m: MasterCore) -> bool:
    """Tell every agent (one broadcast) when the cluster's size has moved its heartbeat interval;
    True when it did."""
    seconds = m.pacer.update(len(m.cluster.agents), time.time())
    if seconds is None:
        return False
    log.info("agents heartbeat every %.1f s or slower (%d agents)", seconds, len(m.cluster.agents))
    await m.outbox.to_all_agents(wire.HeartbeatInterval(agent_id="all", seconds=seconds))
    return True
