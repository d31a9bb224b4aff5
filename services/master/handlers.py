"""The master's handlers: one method per message type.

Each handler changes the state with no await in between (so handlers on other queues never see a half
change), then publishes. The master is the authority over resources: an allocation it cannot honour is
sent back as recovered.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from opentelemetry import trace

from meseta.master.activity import Activity, CycleRecord
from meseta.master.cluster import (
    AgentInfo,
    Cluster,
    FrameworkInfo,
    ScheduledRevocation,
    TaskEntry,
    hash_secret,
)
from meseta.master.metrics import MasterMetrics
from meseta.master.pacing import HeartbeatPacer
from meseta.master.registry import Registry
from meseta.master.validation import Refusal, executors_to_start, validate_accept
from meseta.sdk import tracing, wire
from meseta.sdk.bus import Bus
from meseta.sdk.wire import ErrorCode, Resources

log = logging.getLogger(__name__)

_OFFER_REFUSALS = frozenset(
    {ErrorCode.UNKNOWN_OFFER, ErrorCode.FOREIGN_OFFER, ErrorCode.OFFERS_ON_SEVERAL_AGENTS}
)
"""Refusals of an ACCEPT for its offers, not its tasks."""


class MasterHandlers:
    """The master's behaviour, given its state, its bus and its registry."""

    def __init__(
        self,
        cluster: Cluster,
        bus: Bus,
        registry: Registry,
        offer_timeout: float,
        revocation_grace: float,
        activity: Activity | None = None,
        metrics: MasterMetrics | None = None,
        heartbeat_rate: float = 0.0,
    ) -> None:
        self.cluster = cluster
        self.pacer = HeartbeatPacer(heartbeat_rate)
        self.activity = activity or Activity()
        self.metrics = metrics or MasterMetrics(cluster, lambda: self.epoch > 0)
        self.bus = bus
        self.registry = registry
        self.offer_timeout = offer_timeout
        self.revocation_grace = revocation_grace
        self.epoch = 0
        self._tracer = tracing.tracer("master")
        self._recovered: list[tuple[str, str, Resources, float]] = []
        """Resources of tasks that just ended, to give back once their updates are applied."""
        self._reply_to: str | None = None
        self._by_type: dict[str, Callable[[Any, AbstractIncomingMessage], Awaitable[None]]] = {
            "REGISTER_AGENT": self.register_agent,
            "HEARTBEAT": self.heartbeat,
            "STATUS_UPDATE": self.status_update,
            "STATUS_UPDATES": self.status_updates,
            "SUBSCRIBE": self.subscribe,
            "ACCEPT": self.accept,
            "DECLINE": self.decline,
            "KILL_TASK": self.kill,
            "ACKNOWLEDGE": self.acknowledge,
            "ACKNOWLEDGEMENTS": self.acknowledgements,
            "SUPPRESS": self.suppress,
            "REVIVE": self.revive,
            "SET_FILTERS": self.set_filters,
            "TEARDOWN": self.teardown,
            "ALLOCATION": self.allocation,
            "ALLOCATIONS": self.allocations,
            "ALLOCATOR_STARTED": self.allocator_started,
            "REVOCATION_REQUEST": self.revocation,
            "GET_LOGS": self.get_logs,
            "OPERATOR_KILL": self.operator_kill,
            "SEND_TO_EXECUTOR": self.send_to_executor,
            "FRAMEWORK_HEARTBEAT": self.framework_heartbeat,
            "RECONCILE": self.reconcile,
        }

    async def handle(self, message: wire.Message, incoming: AbstractIncomingMessage) -> None:
        """Dispatch one decoded message; framework calls must carry their framework's secret."""
        self._reply_to = incoming.reply_to
        framework_id = getattr(message, "framework_id", None)
        if isinstance(message, wire.FrameworkCall) and framework_id in self.cluster.frameworks:
            if not self.cluster.frameworks[framework_id].holds_secret(message.secret):
                # Told to the caller only: the framework it pretends to be hears nothing.
                await self._answer_caller(
                    wire.Error(
                        framework_id=framework_id,
                        code=ErrorCode.UNAUTHORIZED,
                        message=f"wrong secret for framework {framework_id}",
                        correlation_id=message.message_id,
                    )
                )
                return
            self.cluster.frameworks[framework_id].last_seen = time.time()
        await self._by_type[message.type](message, incoming)

    async def _answer_caller(self, answer: wire.Message) -> None:
        log.info("refused a call: %s", answer)
        if self._reply_to:
            await self.bus.publish("", self._reply_to, answer)

    # --- publishing helpers ------------------------------------------------------------------------------

    async def to_allocator(self, message: wire.Message) -> None:
        await self.bus.publish(wire.Exchange.ALLOCATION, wire.RoutingKey.TO_ALLOCATOR, message)

    async def to_framework(self, framework_id: str, message: wire.Message) -> None:
        await self.bus.publish(wire.Exchange.OFFERS, framework_id, message)

    async def to_agent(self, agent_id: str, message: wire.Message) -> None:
        # Persistent: a launch or a kill must survive a broker restart (agent queues are durable).
        await self.bus.publish(wire.Exchange.LAUNCHES, agent_id, message, persistent=True)

    async def kill_on(
        self, agent_id: str, framework_id: str, task_id: str, reason: wire.StatusReason
    ) -> None:
        """Tell an agent to kill a task, and why."""
        kill = wire.KillTask(agent_id=agent_id, framework_id=framework_id, task_id=task_id, reason=reason)
        await self.to_agent(agent_id, kill)

    async def recover(
        self, framework_id: str, agent_id: str, resources: Resources, refuse: float = 0.0
    ) -> None:
        if not resources.is_empty():
            await self.to_allocator(
                wire.ResourcesRecovered(
                    framework_id=framework_id, agent_id=agent_id, resources=resources, refuse_seconds=refuse
                )
            )

    async def error(self, framework_id: str, call: wire.Message, code: ErrorCode, text: str) -> None:
        log.info("refused %s of %s: %s %s", call.type, framework_id, code, text)
        if (fw := self.cluster.frameworks.get(framework_id)) is not None:
            fw.stats.errors += 1
        trace.get_current_span().set_attribute("meseta.error", str(code))
        error = wire.Error(framework_id=framework_id, code=code, message=text, correlation_id=call.message_id)
        if framework_id not in self.cluster.frameworks:
            await self._answer_caller(error)  # no queue of that name to route to
        else:
            await self.to_framework(framework_id, error)

    # --- agents -------------------------------------------------------------------------------------------

    async def register_agent(self, msg: wire.RegisterAgent, _: AbstractIncomingMessage) -> None:
        agent = self.cluster.agents.get(msg.agent_id)
        if agent is not None:
            agent.last_seen = time.time()
            log.info("agent %s re-registered", msg.agent_id)
            return
        agent = AgentInfo(
            msg.agent_id, msg.hostname, dict(msg.attributes), msg.resources, time.time(), gpu_ids=msg.gpu_ids
        )
        self.cluster.add_agent(agent)
        self.pacer.observe(msg.heartbeat_interval)
        broadcast = await self.pace_heartbeats()
        if not broadcast and self.pacer.advertised > msg.heartbeat_interval:
            # Later broadcasts reach it too; this one is for the interval already in force.
            interval = wire.HeartbeatInterval(agent_id=msg.agent_id, seconds=self.pacer.advertised)
            await self.to_agent(msg.agent_id, interval)
        if msg.agent_id in self.cluster.lost_agents:
            # Back from the dead: its frameworks were told these tasks are LOST and have replaced them.
            self.cluster.lost_agents.discard(msg.agent_id)
            for running in msg.running_tasks:
                reason = wire.StatusReason.AGENT_REMOVED
                await self.kill_on(msg.agent_id, running.framework_id, running.task_id, reason)
            msg = msg.model_copy(update={"running_tasks": ()})
        # A master that restarted learns the agent's running tasks from it; they hold resources.
        for running in msg.running_tasks:
            self.cluster.add_task(
                TaskEntry(
                    running.framework_id,
                    running.task_id,
                    agent.agent_id,
                    running.resources,
                    wire.TaskState.RUNNING,
                    running.gpu_ids,
                )
            )
        log.info(
            "agent %s registered on %s with %s (%d tasks)",
            msg.agent_id,
            msg.hostname,
            msg.resources,
            len(msg.running_tasks),
        )
        if msg.running_tasks:
            # Its tasks are held by frameworks: the allocator must see them as allocated, not free.
            await self.to_allocator(self.cluster.state_sync())
            return
        await self.to_allocator(agent.as_event())

    async def heartbeat(self, msg: wire.Heartbeat, _: AbstractIncomingMessage) -> None:
        agent = self.cluster.agents.get(msg.agent_id)
        if agent is None:
            # We do not know it (we restarted, or it registered before we ran): ask for its inventory.
            await self.to_agent(msg.agent_id, wire.ReregisterAgent(agent_id=msg.agent_id))
            return
        agent.last_seen = time.time()

    async def status_update(self, msg: wire.StatusUpdate, _: AbstractIncomingMessage) -> None:
        await self._forward_statuses(self._apply_status(msg))

    async def status_updates(self, msg: wire.StatusUpdates, _: AbstractIncomingMessage) -> None:
        """A batch: each update gets its own span, in its task's offer-cycle trace."""
        forwarded: list[wire.StatusUpdate] = []
        for update in msg.updates:
            # Not made current, attributes given at the start: a launch burst is thousands of these.
            span = self._tracer.start_span(
                "master STATUS_UPDATE",
                context=tracing.extract(update.trace),
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "meseta.service": "master",
                    "meseta.message.type": update.type,
                    **_status_attributes(update),
                },
            )
            try:
                forwarded += self._apply_status(update, span)
            finally:
                span.end()
        await self._forward_statuses(forwarded)

    def _apply_status(
        self, msg: wire.StatusUpdate, span: trace.Span | None = None
    ) -> list[wire.StatusUpdate]:
        """Change the state; the update itself when it is to be forwarded (or acknowledged for nobody).

        ``span`` is the update's own span; without one, the current span (the consumer's) gets its
        attributes."""
        status = msg.status
        if span is None:
            span = trace.get_current_span()
            span.set_attributes(_status_attributes(msg))
        key = (msg.framework_id, status.task_id)
        task = self.cluster.tasks.get(key)
        if task is not None:
            task.state = status.state
            if status.state.terminal:
                self.cluster.end_task(key)
                if msg.framework_id in self.cluster.frameworks:
                    self._recovered.append((msg.framework_id, task.agent_id, task.resources, 0.0))
        # Forwarded in this span's trace (the task's offer cycle), also when it leaves in a batch.
        return [msg.model_copy(update={"trace": tracing.inject({}, trace.set_span_in_context(span))})]

    async def _forward_statuses(self, updates: list[wire.StatusUpdate]) -> None:
        """Resources back to the allocator, one UPDATE(S) per framework, and acknowledgements of updates
        whose framework is gone (nobody else will acknowledge them, so the agent can forget them)."""
        await self._flush_recovered()
        per_framework: dict[str, list[wire.StatusUpdate]] = {}
        orphans: dict[str, list[str]] = {}
        for update in updates:
            if update.framework_id in self.cluster.frameworks:
                per_framework.setdefault(update.framework_id, []).append(update)
            else:
                orphans.setdefault(update.agent_id, []).append(update.status.uuid)
        for framework_id, statuses in per_framework.items():
            await self._statuses_to_framework(
                framework_id, [u.status for u in statuses], [u.trace for u in statuses]
            )
        for agent_id, uuids in orphans.items():
            await self.to_agent(agent_id, wire.AcknowledgeUpdates(agent_id=agent_id, uuids=tuple(uuids)))

    async def _statuses_to_framework(
        self,
        framework_id: str,
        statuses: Sequence[wire.TaskStatus],
        traces: Sequence[dict[str, str]] = (),
    ) -> None:
        """One UPDATE, or UPDATES of at most ``MAX_BATCH`` (each status with its trace, where given)."""
        if len(statuses) == 1:
            await self.to_framework(framework_id, wire.Update(framework_id=framework_id, status=statuses[0]))
            return
        for i in range(0, len(statuses), wire.MAX_BATCH):
            batch = wire.Updates(
                framework_id=framework_id,
                statuses=tuple(statuses[i : i + wire.MAX_BATCH]),
                traces=tuple(traces[i : i + wire.MAX_BATCH]),
            )
            await self.to_framework(framework_id, batch)

    # --- allocations --------------------------------------------------------------------------------------

    async def allocation(self, msg: wire.Allocation, _: AbstractIncomingMessage) -> None:
        grant = wire.Grant(
            framework_id=msg.framework_id,
            agent_id=msg.agent_id,
            resources=msg.resources,
            allocated_at=msg.allocated_at,
        )
        offer = self._offer(grant)
        await self._flush_recovered()
        if offer is not None:
            await self.to_framework(
                offer.framework_id, wire.Offers(framework_id=offer.framework_id, offers=(offer,))
            )

    async def allocations(self, msg: wire.Allocations, _: AbstractIncomingMessage) -> None:
        """A cycle's grants: one span per grant in its own trace, then one OFFERS per framework."""
        per_framework: dict[str, list[wire.Offer]] = {}
        for grant in msg.grants:
            # Not made current: a first round at 10,000 agents is tens of thousands of these.
            span = self._tracer.start_span(
                "master ALLOCATION",
                context=tracing.extract(grant.trace),
                kind=trace.SpanKind.CONSUMER,
                attributes={"meseta.service": "master", "meseta.message.type": "ALLOCATION"},
            )
            try:
                offer = self._offer(grant, span)
            finally:
                span.end()
            if offer is not None:
                per_framework.setdefault(offer.framework_id, []).append(offer)
        await self._flush_recovered()
        for framework_id, offers in per_framework.items():
            await self.to_framework(
                framework_id, wire.Offers(framework_id=framework_id, offers=tuple(offers))
            )

    def _offer(self, grant: wire.Grant, span: trace.Span | None = None) -> wire.Offer | None:
        """Turn a grant into an outstanding offer, or send it back when it is stale.

        ``span`` is the grant's own span (default: the current one); the offer carries its context."""
        if span is None:
            span = trace.get_current_span()
        agent = self.cluster.agents.get(grant.agent_id)
        fw = self.cluster.frameworks.get(grant.framework_id)
        gpus = grant.resources.gpus
        # The master enforces standing filters too: an allocator with an older view must not leak offers.
        if (
            agent is None
            or fw is None
            or not grant.resources.fits_in(agent.free)
            or not fw.filters.admits(agent.hostname, agent.attributes, grant.resources)
            or (gpus > 0 and len(agent.free_gpus(gpus)) < gpus)
        ):
            log.info("stale allocation of %s to %s sent back", grant.agent_id, grant.framework_id)
            self._recovered.append((grant.framework_id, grant.agent_id, grant.resources, 0.0))
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
            expires_at=now + self.offer_timeout,
            trace=tracing.inject({}, trace.set_span_in_context(span)),
        )
        self.cluster.add_offer(offer)
        fw.stats.offers_sent += 1
        self.metrics.offer("sent", fw.framework_id)
        self.activity.offered(
            CycleRecord(offer.offer_id, fw.framework_id, agent.agent_id, grant.allocated_at, now)
        )
        span.set_attributes(
            {
                "meseta.offer_id": offer.offer_id,
                "meseta.framework_id": fw.framework_id,
                "meseta.agent_id": agent.agent_id,
            }
        )
        return offer

    async def _flush_recovered(self) -> None:
        """Give back, in one message, what the handler found unused."""
        recovered, self._recovered = self._recovered, []
        items = tuple(
            wire.ResourcesRecovered(framework_id=f, agent_id=a, resources=r, refuse_seconds=refuse)
            for f, a, r, refuse in recovered
            if not r.is_empty()
        )
        for i in range(0, len(items), wire.MAX_BATCH):
            chunk = items[i : i + wire.MAX_BATCH]
            await self.to_allocator(
                chunk[0] if len(chunk) == 1 else wire.ResourcesRecoveredBatch(items=chunk)
            )

    def _answered(self, offer_id: str, decision: str, at: float, tasks: int = 0) -> None:
        record = self.activity.answered(offer_id, decision, at, tasks)
        if record is not None and record.round_trip_ms is not None and decision != "rescind":
            self.metrics.round_trip(record.round_trip_ms, record.framework_id, decision)

    async def remove_silent_agents(self, timeout: float) -> None:
        """Agents that missed heartbeats for ``timeout`` seconds (longer where they were told to beat
        slowly) are lost, and so are their tasks."""
        now = time.time()
        timeout = self.pacer.timeout(timeout, now)
        for agent in [a for a in self.cluster.agents.values() if now - a.last_seen > timeout]:
            # Removing one awaits: the next may have been heard from (or removed) in the meantime.
            silent = time.time() - agent.last_seen
            if self.cluster.agents.get(agent.agent_id) is agent and silent > timeout:
                await self.remove_agent(agent, f"no heartbeat for {silent:.1f} s")

    async def remove_agent(self, agent: AgentInfo, why: str) -> None:
        """Forget an agent: rescind its offers, report its tasks LOST, tell frameworks and allocator."""
        log.warning("agent %s lost: %s", agent.agent_id, why)
        for offer in [o for o in self.cluster.offers.values() if o.agent_id == agent.agent_id]:
            self.cluster.remove_offer(offer.offer_id)
            rescind = wire.Rescind(framework_id=offer.framework_id, offer_id=offer.offer_id)
            await self.to_framework(offer.framework_id, rescind)
        affected: set[str] = set()
        for key in sorted(agent.tasks):
            task = self.cluster.end_task(key)
            if task is None or task.framework_id not in self.cluster.frameworks:
                continue
            affected.add(task.framework_id)
            status = wire.TaskStatus(
                task_id=task.task_id,
                state=wire.TaskState.LOST,
                agent_id=agent.agent_id,
                reason=wire.StatusReason.AGENT_REMOVED,
                message=f"agent {agent.agent_id} lost: {why}",
            )
            await self.to_framework(
                task.framework_id, wire.Update(framework_id=task.framework_id, status=status)
            )
        self.cluster.remove_agent(agent.agent_id)
        self.cluster.lost_agents.add(agent.agent_id)
        await self.to_allocator(wire.AgentRemoved(agent_id=agent.agent_id))
        await self.pace_heartbeats()
        for framework_id in sorted(affected):
            await self.to_framework(
                framework_id, wire.Failure(framework_id=framework_id, agent_id=agent.agent_id)
            )

    async def pace_heartbeats(self) -> bool:
        """Tell every agent (one broadcast) when the cluster's size has moved its heartbeat interval;
        True when it did."""
        seconds = self.pacer.update(len(self.cluster.agents), time.time())
        if seconds is None:
            return False
        log.info("agents heartbeat every %.1f s or slower (%d agents)", seconds, len(self.cluster.agents))
        message = wire.HeartbeatInterval(agent_id="all", seconds=seconds)
        await self.bus.publish(wire.Exchange.LAUNCHES, wire.RoutingKey.ALL_AGENTS, message)
        return True

    async def expire_offers(self) -> None:
        """Rescind offers past their expiry and recover their resources."""
        for offer in self.cluster.expired_offers(time.time()):
            await self.rescind(offer)

    # --- framework calls ----------------------------------------------------------------------------------

    async def subscribe(self, msg: wire.Subscribe, incoming: AbstractIncomingMessage) -> None:
        if not incoming.reply_to:
            raise ValueError("SUBSCRIBE needs an AMQP reply_to queue for its answer")
        if msg.framework_id is not None:
            await self._resubscribe(msg, incoming.reply_to)
            return
        secret = secrets.token_urlsafe(24)
        fw = FrameworkInfo(
            wire.new_id("fw"),
            msg.name,
            msg.role,
            msg.weight,
            msg.priority,
            msg.filters,
            subscribed_at=time.time(),
            secret_hash=hash_secret(secret),
            failover_timeout=msg.failover_timeout,
        )
        framework_id = fw.framework_id
        await self.registry.save_framework(framework_id, fw.registry_entry())
        # The master declares the framework's queue before any offer can be routed to it.
        await self.bus.declare_queue(wire.framework_queue(framework_id), wire.Exchange.OFFERS, framework_id)
        self.cluster.frameworks[framework_id] = fw
        log.info("framework %s (%s, role %s) subscribed", framework_id, msg.name, msg.role)
        answer = wire.Subscribed(
            framework_id=framework_id, secret=secret, master_epoch=self.epoch, correlation_id=msg.message_id
        )
        await self.bus.publish("", incoming.reply_to, answer)
        await self.to_allocator(fw.as_event())

    async def _resubscribe(self, msg: wire.Subscribe, reply_to: str) -> None:
        """A framework comes back (failover): same id, same secret, its tasks and queued updates intact."""
        assert msg.framework_id is not None
        fw = self.cluster.frameworks.get(msg.framework_id)
        if fw is None or not fw.holds_secret(msg.secret):
            code = ErrorCode.UNKNOWN_FRAMEWORK if fw is None else ErrorCode.UNAUTHORIZED
            text = "no such framework (past its failover timeout?)" if fw is None else "wrong secret"
            error = wire.Error(
                framework_id=msg.framework_id, code=code, message=text, correlation_id=msg.message_id
            )
            await self.bus.publish("", reply_to, error)
            return
        fw.failover_timeout = msg.failover_timeout
        await self.registry.save_framework(fw.framework_id, fw.registry_entry())
        await self.bus.declare_queue(
            wire.framework_queue(fw.framework_id), wire.Exchange.OFFERS, fw.framework_id
        )
        await self.reconnect(fw)
        log.info("framework %s re-subscribed with %d tasks", fw.framework_id, len(fw.tasks))
        answer = wire.Subscribed(
            framework_id=fw.framework_id,
            secret=msg.secret or "",
            master_epoch=self.epoch,
            correlation_id=msg.message_id,
        )
        await self.bus.publish("", reply_to, answer)

    async def framework_heartbeat(self, msg: wire.FrameworkHeartbeat, _: AbstractIncomingMessage) -> None:
        fw = self.cluster.frameworks.get(msg.framework_id)
        if fw is not None and fw.disconnected_at is not None:
            await self.reconnect(fw)

    async def reconnect(self, fw: FrameworkInfo) -> None:
        fw.last_seen = time.time()
        if fw.disconnected_at is None:
            return
        fw.disconnected_at = None
        if not fw.suppressed:
            await self.to_allocator(wire.OffersRevived(framework_id=fw.framework_id))

    async def check_frameworks(self, timeout: float) -> None:
        """Silent frameworks are disconnected (no offers); past their failover timeout they are removed."""
        now = time.time()
        for fw in list(self.cluster.frameworks.values()):
            if fw.disconnected_at is None and now - fw.last_seen > timeout:
                fw.disconnected_at = now
                log.warning(
                    "framework %s disconnected; it keeps its tasks for %.0f s",
                    fw.framework_id,
                    fw.failover_timeout,
                )
                for offer_id in sorted(fw.offers):
                    # A call handled while this loop awaited may have answered the offer already.
                    if (offer := self.cluster.offers.get(offer_id)) is not None:
                        await self.rescind(offer)
                await self.to_allocator(wire.OffersSuppressed(framework_id=fw.framework_id))
            elif fw.disconnected_at is not None and now - fw.disconnected_at > fw.failover_timeout:
                log.warning(
                    "framework %s did not come back within %.0f s: removing it",
                    fw.framework_id,
                    fw.failover_timeout,
                )
                await self.remove_framework(fw)

    async def reconcile(self, msg: wire.Reconcile, _: AbstractIncomingMessage) -> None:
        """Answer with each task's state as the master knows it (LOST when it does not)."""
        if not await self._known(msg):
            return
        fw = self.cluster.frameworks[msg.framework_id]
        task_ids = msg.task_ids or tuple(sorted(tid for _, tid in fw.tasks))
        for task_id in task_ids:
            task = self.cluster.tasks.get((fw.framework_id, task_id))
            status = wire.TaskStatus(
                task_id=task_id,
                state=task.state if task is not None else wire.TaskState.LOST,
                agent_id=task.agent_id if task is not None else None,
                reason=wire.StatusReason.RECONCILIATION,
                message="known to the master" if task is not None else "unknown to the master",
            )
            await self.to_framework(fw.framework_id, wire.Update(framework_id=fw.framework_id, status=status))

    async def accept(self, msg: wire.Accept, _: AbstractIncomingMessage) -> None:
        span = trace.get_current_span()
        span.set_attributes({"meseta.decision": "accept", "meseta.task_count": len(msg.tasks)})
        checked = validate_accept(self.cluster, msg, time.time())
        if isinstance(checked, Refusal):
            await self.error(msg.framework_id, msg, checked.code, checked.message)
            await self._not_launched(msg, checked)
            return
        fw = self.cluster.frameworks[msg.framework_id]
        agent_id = checked[0].agent_id
        for executor in executors_to_start(self.cluster, msg, agent_id):
            # The executor's container is accounted like a task until the agent reports it ended.
            executor_task = wire.executor_task_id(executor.executor_id, agent_id)
            self.cluster.add_task(TaskEntry(fw.framework_id, executor_task, agent_id, executor.resources))
        gpu_pool = [g for offer in checked for g in offer.gpu_ids]
        assignments: dict[str, tuple[str, ...]] = {}
        for offer in checked:
            self.cluster.remove_offer(offer.offer_id)
        for task in msg.tasks:
            # Exactly the offered device ids, each to one task; the rest go back with the remainder.
            ids, gpu_pool = tuple(gpu_pool[: task.resources.gpus]), gpu_pool[task.resources.gpus :]
            if ids:
                assignments[task.task_id] = ids
            self.cluster.add_task(
                TaskEntry(fw.framework_id, task.task_id, agent_id, task.resources, gpu_ids=ids)
            )
        fw.stats.offers_accepted += len(checked)
        fw.last_accept_at = time.time()
        self.metrics.offer("accepted", fw.framework_id, len(checked))
        for offer in checked:
            self._answered(offer.offer_id, "accept", fw.last_accept_at, len(msg.tasks))
        fw.stats.tasks_launched += len(msg.tasks)
        span.set_attributes(
            {"meseta.agent_id": agent_id, "meseta.offer_id": ",".join(o.offer_id for o in checked)}
        )
        offered = wire.total(o.resources for o in checked)
        used = wire.total(t.resources for t in msg.tasks)
        if msg.tasks:
            await self.to_agent(
                agent_id,
                wire.LaunchTasks(
                    agent_id=agent_id,
                    framework_id=fw.framework_id,
                    tasks=msg.tasks,
                    gpu_assignments=assignments,
                ),
            )
        await self.recover(fw.framework_id, agent_id, offered - used, msg.refuse_seconds)

    async def _not_launched(self, msg: wire.Accept, refusal: Refusal) -> None:
        """A terminal update per task of a refused ACCEPT, as Mesos sends: a scheduler that tracks its
        tasks by their updates would otherwise wait for ever on tasks that never left the master. LOST
        (INVALID_OFFERS) when the offers were at fault, ERROR (INVALID_TASK) when the tasks were. A task
        id that names a live task gets none: that task is not the one refused."""
        if msg.framework_id not in self.cluster.frameworks:
            return
        offers_at_fault = refusal.code in _OFFER_REFUSALS
        statuses = tuple(
            wire.TaskStatus(
                task_id=task_id,
                state=wire.TaskState.LOST if offers_at_fault else wire.TaskState.ERROR,
                reason=wire.StatusReason.INVALID_OFFERS
                if offers_at_fault
                else wire.StatusReason.INVALID_TASK,
                message=f"refused: {refusal.message}",
            )
            for task_id in dict.fromkeys(t.task_id for t in msg.tasks)
            if (msg.framework_id, task_id) not in self.cluster.tasks
        )
        await self._statuses_to_framework(msg.framework_id, statuses)

    async def decline(self, msg: wire.Decline, _: AbstractIncomingMessage) -> None:
        trace.get_current_span().set_attribute("meseta.decision", "decline")
        for offer_id in dict.fromkeys(msg.offer_ids):
            offer = self.cluster.offers.get(offer_id)
            if offer is None or offer.framework_id != msg.framework_id:
                await self.error(
                    msg.framework_id, msg, ErrorCode.UNKNOWN_OFFER, f"no offer {offer_id} to decline"
                )
                continue
            self.cluster.remove_offer(offer_id)
            if (fw := self.cluster.frameworks.get(msg.framework_id)) is not None:
                fw.stats.offers_declined += 1
                self.metrics.offer("declined", fw.framework_id)
            self._answered(offer_id, "decline", time.time())
            self._recovered.append((msg.framework_id, offer.agent_id, offer.resources, msg.refuse_seconds))
        await self._flush_recovered()

    async def kill(self, msg: wire.Kill, _: AbstractIncomingMessage) -> None:
        task = self.cluster.tasks.get((msg.framework_id, msg.task_id))
        if task is None:
            await self.error(msg.framework_id, msg, ErrorCode.UNKNOWN_TASK, f"no live task {msg.task_id}")
            return
        task.state = wire.TaskState.KILLING
        await self.kill_on(
            task.agent_id, msg.framework_id, msg.task_id, wire.StatusReason.KILLED_BY_FRAMEWORK
        )

    async def acknowledge(self, msg: wire.Acknowledge, _: AbstractIncomingMessage) -> None:
        if msg.agent_id in self.cluster.agents:
            await self.to_agent(
                msg.agent_id,
                wire.AcknowledgeUpdate(agent_id=msg.agent_id, task_id=msg.task_id, uuid=msg.uuid),
            )

    async def acknowledgements(self, msg: wire.Acknowledgements, _: AbstractIncomingMessage) -> None:
        """A batch of acknowledgements: one ACKNOWLEDGE_UPDATES per agent."""
        per_agent: dict[str, list[str]] = {}
        for ack in msg.acks:
            if ack.agent_id in self.cluster.agents:
                per_agent.setdefault(ack.agent_id, []).append(ack.uuid)
        for agent_id, uuids in per_agent.items():
            await self.to_agent(agent_id, wire.AcknowledgeUpdates(agent_id=agent_id, uuids=tuple(uuids)))

    async def suppress(self, msg: wire.Suppress, _: AbstractIncomingMessage) -> None:
        if await self._known(msg):
            fw = self.cluster.frameworks[msg.framework_id]
            fw.suppressed = True
            await self.registry.save_framework(fw.framework_id, fw.registry_entry())
            await self.to_allocator(wire.OffersSuppressed(framework_id=msg.framework_id))

    async def revive(self, msg: wire.Revive, _: AbstractIncomingMessage) -> None:
        if await self._known(msg):
            fw = self.cluster.frameworks[msg.framework_id]
            fw.suppressed = False
            await self.registry.save_framework(fw.framework_id, fw.registry_entry())
            await self.to_allocator(wire.OffersRevived(framework_id=msg.framework_id))

    async def set_filters(self, msg: wire.SetFilters, _: AbstractIncomingMessage) -> None:
        if not await self._known(msg):
            return
        fw = self.cluster.frameworks[msg.framework_id]
        fw.filters = msg.filters
        # Durable before effective: a restart right after this call still knows the filters.
        await self.registry.save_framework(fw.framework_id, fw.registry_entry())
        await self.to_allocator(wire.FiltersUpdated(framework_id=fw.framework_id, filters=msg.filters))
        # Outstanding offers the new filters reject are rescinded, so the framework never holds them.
        for offer_id in list(fw.offers):
            if (offer := self.cluster.offers.get(offer_id)) is None:
                continue  # answered while this loop awaited
            agent = self.cluster.agents.get(offer.agent_id)
            if agent is not None and not msg.filters.admits(
                agent.hostname, agent.attributes, offer.resources
            ):
                await self.rescind(offer)

    async def rescind(self, offer: wire.Offer) -> None:
        """Withdraw an outstanding offer: its resources return to the pool (once, however often asked)."""
        if self.cluster.remove_offer(offer.offer_id) is None:
            return
        if (fw := self.cluster.frameworks.get(offer.framework_id)) is not None:
            fw.stats.offers_rescinded += 1
            self.metrics.offer("rescinded", fw.framework_id)
        self._answered(offer.offer_id, "rescind", time.time())
        await self.recover(offer.framework_id, offer.agent_id, offer.resources)
        await self.to_framework(
            offer.framework_id, wire.Rescind(framework_id=offer.framework_id, offer_id=offer.offer_id)
        )

    # --- allocator ----------------------------------------------------------------------------------------

    async def allocator_started(self, msg: wire.AllocatorStarted, _: AbstractIncomingMessage) -> None:
        log.info("an allocator started: sending it the master's view")
        await self.to_allocator(self.cluster.state_sync())

    async def revocation(self, msg: wire.Revocation, _: AbstractIncomingMessage) -> None:
        """Take resources back for a role under its quota: outstanding offers first, then tasks."""
        fw = self.cluster.frameworks.get(msg.framework_id)
        if fw is None or msg.agent_id not in self.cluster.agents:
            return
        need = msg.resources
        for offer_id in sorted(fw.offers):
            offer = self.cluster.offers.get(offer_id)
            if offer is not None and offer.agent_id == msg.agent_id and not need.is_empty():
                await self.rescind(offer)
                need = need.shortfall(offer.resources)
        if need.is_empty():
            return
        victims: list[str] = []
        live = [
            t
            for t in self.cluster.tasks.values()
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
        deadline = time.time() + self.revocation_grace
        self.cluster.revocations.append(ScheduledRevocation(deadline, fw.framework_id, tuple(victims)))
        log.info(
            "revoking %s of %s on %s for role %s in %.1f s",
            victims,
            fw.framework_id,
            msg.agent_id,
            msg.for_role,
            self.revocation_grace,
        )
        await self.to_framework(
            fw.framework_id,
            wire.RevocationNotice(
                framework_id=fw.framework_id,
                agent_id=msg.agent_id,
                task_ids=tuple(victims),
                grace_seconds=self.revocation_grace,
                deadline=deadline,
            ),
        )

    async def kill_revoked(self) -> None:
        """Kill the tasks whose revocation grace period is over."""
        now = time.time()
        due = [r for r in self.cluster.revocations if r.deadline <= now]
        self.cluster.revocations = [r for r in self.cluster.revocations if r.deadline > now]
        for revocation in due:
            for task_id in revocation.task_ids:
                task = self.cluster.tasks.get((revocation.framework_id, task_id))
                if task is not None:
                    await self.kill_on(task.agent_id, task.framework_id, task_id, wire.StatusReason.REVOKED)

    async def teardown(self, msg: wire.Teardown, _: AbstractIncomingMessage) -> None:
        if await self._known(msg):
            await self.remove_framework(self.cluster.frameworks[msg.framework_id])

    async def remove_framework(self, fw: FrameworkInfo) -> None:
        """Forget a framework: rescind its offers, kill its tasks, delete it from the registry."""
        del self.cluster.frameworks[fw.framework_id]
        for offer_id in list(fw.offers):
            self.cluster.remove_offer(offer_id)
        live = [self.cluster.tasks[key] for key in fw.tasks if key in self.cluster.tasks]
        # The allocator gives back everything the framework held when it hears FRAMEWORK_REMOVED.
        await self.to_allocator(wire.FrameworkRemoved(framework_id=fw.framework_id))
        for task in live:
            await self.kill_on(
                task.agent_id, fw.framework_id, task.task_id, wire.StatusReason.FRAMEWORK_REMOVED
            )
        await self.registry.remove_framework(fw.framework_id)
        log.info("framework %s removed (%d tasks killed)", fw.framework_id, len(live))

    async def send_to_executor(self, msg: wire.SendToExecutor, _: AbstractIncomingMessage) -> None:
        if not await self._known(msg):
            return
        key = (msg.framework_id, wire.executor_task_id(msg.executor_id, msg.agent_id))
        if key not in self.cluster.tasks:
            text = f"no executor {msg.executor_id} of this framework runs on {msg.agent_id}"
            await self.error(msg.framework_id, msg, ErrorCode.UNKNOWN_TASK, text)
            return
        forward = wire.ExecutorMessage(
            agent_id=msg.agent_id, framework_id=msg.framework_id, executor_id=msg.executor_id, data=msg.data
        )
        await self.to_agent(msg.agent_id, forward)

    async def get_logs(self, msg: wire.GetLogs, incoming: AbstractIncomingMessage) -> None:
        """Route a log request to the agent that runs (or ran) the task; it answers the asker directly."""
        if not incoming.reply_to:
            raise ValueError("GET_LOGS needs an AMQP reply_to queue for its answer")
        keys = [k for k in (*self.cluster.tasks, *self.cluster.finished) if k[1] == msg.task_id]
        keys = [k for k in dict.fromkeys(keys) if msg.framework_id in (None, k[0])]
        error: tuple[ErrorCode, str] | None = None
        if not keys:
            error = (ErrorCode.UNKNOWN_TASK, f"no task {msg.task_id} is known to the master")
        elif len(keys) > 1:
            error = (ErrorCode.INVALID_CALL, f"task id {msg.task_id} is used by several frameworks: name one")
        if error is not None:
            answer = wire.Error(
                framework_id=msg.framework_id or "",
                code=error[0],
                message=error[1],
                correlation_id=msg.message_id,
            )
            await self.bus.publish("", incoming.reply_to, answer)
            return
        framework_id, task_id = keys[0]
        task = self.cluster.tasks.get(keys[0])
        agent_id = task.agent_id if task is not None else self.cluster.finished[keys[0]]
        await self.to_agent(
            agent_id,
            wire.FetchLogs(
                agent_id=agent_id,
                framework_id=framework_id,
                task_id=task_id,
                reply_to=incoming.reply_to,
                tail_bytes=msg.tail_bytes,
                correlation_id=msg.message_id,
            ),
        )

    async def operator_kill(self, msg: wire.OperatorKill, incoming: AbstractIncomingMessage) -> None:
        """Kill a live task on an operator's word; the asker hears KILLING or why not."""
        if not incoming.reply_to:
            raise ValueError("OPERATOR_KILL needs an AMQP reply_to queue for its answer")
        keys = [k for k in self.cluster.tasks if k[1] == msg.task_id and msg.framework_id in (None, k[0])]
        answer: wire.Message
        if len(keys) != 1:
            answer = wire.Error(
                framework_id=msg.framework_id or "",
                code=ErrorCode.UNKNOWN_TASK if not keys else ErrorCode.INVALID_CALL,
                message=f"no live task {msg.task_id}"
                if not keys
                else f"task id {msg.task_id} is used by several frameworks: name one",
                correlation_id=msg.message_id,
            )
        else:
            task = self.cluster.tasks[keys[0]]
            task.state = wire.TaskState.KILLING
            await self.kill_on(
                task.agent_id, task.framework_id, task.task_id, wire.StatusReason.KILLED_BY_OPERATOR
            )
            answer = wire.Killing(
                framework_id=task.framework_id,
                task_id=task.task_id,
                agent_id=task.agent_id,
                correlation_id=msg.message_id,
            )
        await self.bus.publish("", incoming.reply_to, answer)

    async def invalid_call(self, body: bytes, reason: str, incoming: AbstractIncomingMessage) -> None:
        """A call that failed validation was dead-lettered: tell its sender why, when it can be told."""
        try:
            data = json.loads(body)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        framework_id = data.get("framework_id")
        code = ErrorCode.INVALID_TASK if "tasks." in reason else ErrorCode.INVALID_CALL
        answer = wire.Error(
            framework_id=framework_id if isinstance(framework_id, str) else "",
            code=code,
            message=reason,
            correlation_id=str(data.get("message_id", ""))[:64] or None,
        )
        if incoming.reply_to:
            await self.bus.publish("", incoming.reply_to, answer)
        elif isinstance(framework_id, str) and framework_id in self.cluster.frameworks:
            await self.to_framework(framework_id, answer)

    async def _known(self, msg: wire.Message) -> bool:
        framework_id: str = getattr(msg, "framework_id", "")
        if framework_id in self.cluster.frameworks:
            return True
        await self.error(
            framework_id, msg, ErrorCode.UNKNOWN_FRAMEWORK, f"framework {framework_id} is not subscribed"
        )
        return False


def _status_attributes(msg: wire.StatusUpdate) -> dict[str, str]:
    return {
        "meseta.task_id": msg.status.task_id,
        "meseta.task_state": msg.status.state.value,
        "meseta.agent_id": msg.agent_id,
        "meseta.framework_id": msg.framework_id,
    }
