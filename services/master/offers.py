"""Offers answered: ACCEPT launches tasks, DECLINE gives resources back, a rescind withdraws an offer."""

from __future__ import annotations

import time

from opentelemetry import trace

from meseta.master.cluster import TaskEntry
from meseta.master.core import Call, MasterCore
from meseta.master.validation import Refusal, executors_to_start, validate_accept
from meseta.sdk import wire
from meseta.sdk.wire import ErrorCode

_OFFER_REFUSALS = frozenset(
    {ErrorCode.UNKNOWN_OFFER, ErrorCode.FOREIGN_OFFER, ErrorCode.OFFERS_ON_SEVERAL_AGENTS}
)
"""Refusals of an ACCEPT for its offers, not its tasks."""


async def accept(m: MasterCore, msg: wire.Accept, ctx: Call) -> None:
    span = trace.get_current_span()
    span.set_attributes({"meseta.decision": "accept", "meseta.task_count": len(msg.tasks)})
    checked = validate_accept(m.cluster, msg, time.time())
    if isinstance(checked, Refusal):
        await m.refuse(msg.framework_id, msg, checked.code, checked.message, ctx)
        await _not_launched(m, msg, checked)
        return
    fw = m.cluster.frameworks[msg.framework_id]
    agent_id = checked[0].agent_id
    sequence = 0
    if msg.tasks and (agent := m.cluster.agents.get(agent_id)) is not None:
        agent.launches_sent += 1
        sequence = agent.launches_sent
    for executor in executors_to_start(m.cluster, msg, agent_id):
        # The executor's container is accounted like a task until the agent reports it ended.
        executor_task = wire.executor_task_id(executor.executor_id, agent_id)
        m.cluster.add_task(
            TaskEntry(fw.framework_id, executor_task, agent_id, executor.resources, sequence=sequence)
        )
    gpu_pool = [g for offer in checked for g in offer.gpu_ids]
    assignments: dict[str, tuple[str, ...]] = {}
    for offer in checked:
        m.cluster.remove_offer(offer.offer_id)
    for task in msg.tasks:
        # Exactly the offered device ids, each to one task; the rest go back with the remainder.
        ids, gpu_pool = tuple(gpu_pool[: task.resources.gpus]), gpu_pool[task.resources.gpus :]
        if ids:
            assignments[task.task_id] = ids
        m.cluster.add_task(
            TaskEntry(fw.framework_id, task.task_id, agent_id, task.resources, gpu_ids=ids, sequence=sequence)
        )
    fw.stats.offers_accepted += len(checked)
    fw.last_accept_at = time.time()
    m.meter.offer("accepted", fw.framework_id, len(checked))
    for offer in checked:
        m.answered(offer.offer_id, "accept", fw.last_accept_at, len(msg.tasks))
    fw.stats.tasks_launched += len(msg.tasks)
    span.set_attributes(
        {"meseta.agent_id": agent_id, "meseta.offer_id": ",".join(o.offer_id for o in checked)}
    )
    offered = wire.total(o.resources for o in checked)
    used = wire.total(t.resources for t in msg.tasks)
    if msg.tasks:
        for executor_id in sorted({t.executor.executor_id for t in msg.tasks if t.executor is not None}):
            await m.outbox.open_executor_queue(agent_id, fw.framework_id, executor_id)
        launch = wire.LaunchTasks(
            agent_id=agent_id,
            framework_id=fw.framework_id,
            tasks=msg.tasks,
            gpu_assignments=assignments,
            mark=wire.LaunchMark(epoch=m.epoch, sequence=sequence),
        )
        await m.outbox.to_agent(agent_id, launch)
    await m.outbox.recover(fw.framework_id, agent_id, offered - used, msg.refuse_seconds)


async def _not_launched(m: MasterCore, msg: wire.Accept, refusal: Refusal) -> None:
    """A terminal update per task of a refused ACCEPT, as Mesos sends: a scheduler that tracks its tasks
    by their updates would otherwise wait for ever on tasks that never left the master. LOST
    (INVALID_OFFERS) when the offers were at fault, ERROR (INVALID_TASK) when the tasks were. A task id
    that names a live or recently ended task gets none: that task is not the one refused (an ACCEPT the
    broker redelivered after a dropped connection is handled again, and its tasks may have finished by
    then: a LOST overwrote their FINISHED). The call's ERROR still tells the framework."""
    if msg.framework_id not in m.cluster.frameworks:
        return
    offers_at_fault = refusal.code in _OFFER_REFUSALS
    statuses = tuple(
        wire.TaskStatus(
            task_id=task_id,
            state=wire.TaskState.LOST if offers_at_fault else wire.TaskState.ERROR,
            reason=wire.StatusReason.INVALID_OFFERS if offers_at_fault else wire.StatusReason.INVALID_TASK,
            message=f"refused: {refusal.message}",
        )
        for task_id in dict.fromkeys(t.task_id for t in msg.tasks)
        if (msg.framework_id, task_id) not in m.cluster.tasks
        and (msg.framework_id, task_id) not in m.cluster.finished
    )
    await m.outbox.statuses(msg.framework_id, statuses)


async def decline(m: MasterCore, msg: wire.Decline, ctx: Call) -> None:
    trace.get_current_span().set_attribute("meseta.decision", "decline")
    for offer_id in dict.fromkeys(msg.offer_ids):
        offer = m.cluster.offers.get(offer_id)
        if offer is None or offer.framework_id != msg.framework_id:
            text = f"no offer {offer_id} to decline"
            await m.refuse(msg.framework_id, msg, ErrorCode.UNKNOWN_OFFER, text, ctx)
            continue
        m.cluster.remove_offer(offer_id)
        if (fw := m.cluster.frameworks.get(msg.framework_id)) is not None:
            fw.stats.offers_declined += 1
            m.meter.offer("declined", fw.framework_id)
        m.answered(offer_id, "decline", time.time())
        m.outbox.recover_later(msg.framework_id, offer.agent_id, offer.resources, msg.refuse_seconds)
    await m.outbox.flush_recovered()


async def rescind(m: MasterCore, offer: wire.Offer) -> None:
    """Withdraw an outstanding offer: its resources return to the pool (once, however often asked)."""
    if m.cluster.remove_offer(offer.offer_id) is None:
        return
    if (fw := m.cluster.frameworks.get(offer.framework_id)) is not None:
        fw.stats.offers_rescinded += 1
        m.meter.offer("rescinded", fw.framework_id)
    m.answered(offer.offer_id, "rescind", time.time())
    await m.outbox.recover(offer.framework_id, offer.agent_id, offer.resources)
    await m.outbox.to_framework(
        offer.framework_id, wire.Rescind(framework_id=offer.framework_id, offer_id=offer.offer_id)
    )
