"""The framework client: subscribe, receive events, and make calls, with no exchange in sight.

Two styles share this client: iterate :meth:`FrameworkClient.events`, or pass a
:class:`~meseta.sdk.scheduler.Scheduler` to :meth:`FrameworkClient.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from aio_pika.abc import AbstractIncomingMessage
from opentelemetry import trace

from meseta.sdk import tracing, wire
from meseta.sdk.batching import Batcher
from meseta.sdk.bus import Bus
from meseta.sdk.calls import fetch_logs, first_answer
from meseta.sdk.stats import percentile
from meseta.sdk.wire import DEFAULT_REFUSE_SECONDS, TaskInfo, TaskStatus

log = logging.getLogger(__name__)

Event = (
    wire.Offers
    | wire.Rescind
    | wire.Update
    | wire.Failure
    | wire.RevocationNotice
    | wire.DrainNotice
    | wire.Error
)
"""What a framework receives after it subscribed."""


SUBSCRIBE_RETRY = 2.0
HEARTBEAT_INTERVAL = 1.0
_SEEN_UPDATES = 100_000  # status uuids remembered to drop redeliveries
"""Seconds between re-sent SUBSCRIBE calls while no master answers."""


class SubscribeError(RuntimeError):
    """The master refused or did not answer a SUBSCRIBE."""


@dataclass
class FrameworkStats:
    """What the framework saw of its offer cycles."""

    offers_received: int = 0
    offers_accepted: int = 0
    offers_declined: int = 0
    offers_rescinded: int = 0
    revocation_notices: int = 0
    drain_notices: int = 0
    duplicate_updates: int = 0
    tasks_launched: int = 0
    errors: int = 0
    cycle_seconds: list[float] = field(default_factory=list)
    """Per launched task: allocation of its offer -> the agent starting it (STARTING)."""


class FrameworkClient:
    """A framework's connection to Meseta.

    Args:
        amqp_url: the cluster's AMQP URL.
        name: the framework's name.
        role: the role it allocates under.
        weight: its weight within the role.
        auto_acknowledge: acknowledge every status update once delivered (the default), or leave it to
            :meth:`acknowledge`.
    """

    def __init__(
        self,
        amqp_url: str,
        name: str,
        *,
        role: str = "*",
        weight: float = 1.0,
        priority: int = 0,
        filters: wire.OfferFilters | None = None,
        auto_acknowledge: bool = True,
        framework_id: str | None = None,
        secret: str | None = None,
        failover_timeout: float = wire.DEFAULT_FAILOVER_TIMEOUT,
        partition_aware: bool = False,
    ) -> None:
        self.name = name
        self.role = role
        self.weight = weight
        self.priority = priority
        self.filters = filters or wire.OfferFilters()
        self.auto_acknowledge = auto_acknowledge
        self.framework_id: str | None = framework_id
        self.secret: str | None = secret
        """Given by the master at subscription; keep it to re-subscribe after a failover."""
        self.failover_timeout = failover_timeout
        self.partition_aware = partition_aware
        """Declare PARTITION_AWARE: tasks on a silent agent are UNREACHABLE (then RUNNING again, or GONE),
        not LOST; reconciliation answers UNKNOWN for a task the master never heard of."""
        self._heartbeats: asyncio.Task[None] | None = None
        self._reply_queue: str | None = None
        self.stats = FrameworkStats()
        self._bus = Bus(amqp_url, "framework")
        self._tracer = tracing.tracer("framework")
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._acks: Batcher[wire.Acknowledged] = Batcher(self._send_acks, max_items=wire.MAX_BATCH)
        self._decisions: dict[str, trace.Span] = {}
        """An open 'framework decide' span per outstanding offer; the decision ends it."""
        self._allocated_at: dict[str, float] = {}
        self._launched_from: dict[str, float] = {}
        self._closed = False
        self._seen_updates: OrderedDict[str, None] = OrderedDict()
        self._acknowledged: OrderedDict[str, None] = OrderedDict()
        """Uuids the framework itself acknowledged (``auto_acknowledge=False``): their resends are
        acknowledged again; others are held until it does."""

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def subscribe(self, timeout: float = 10.0) -> str:
        """Register with the master; returns the framework id.

        The call is re-sent every :data:`SUBSCRIBE_RETRY` seconds until a master answers, so a framework
        may start before its master. Re-sends carry the same message id, which the master handles once.
        """
        await self._bus.connect()
        replies = await self._bus.reply_queue()
        call = wire.Subscribe(
            name=self.name,
            role=self.role,
            weight=self.weight,
            priority=self.priority,
            filters=self.filters,
            framework_id=self.framework_id,
            secret=self.secret,
            failover_timeout=self.failover_timeout,
            capabilities=(wire.Capability.PARTITION_AWARE,) if self.partition_aware else (),
        )
        deadline = asyncio.get_running_loop().time() + timeout
        answer: wire.Message | None = None
        while answer is None:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise SubscribeError(f"no answer from a master within {timeout} s")
            await self._bus.publish(wire.Exchange.CALLS, wire.RoutingKey.CALL, call, reply_to=replies.name)
            answer = await first_answer(replies, min(left, SUBSCRIBE_RETRY))
        if isinstance(answer, wire.Error):
            await replies.delete(if_unused=False, if_empty=False)
            raise SubscribeError(f"{answer.code}: {answer.message}")
        if not isinstance(answer, wire.Subscribed):
            raise SubscribeError(f"unexpected answer {answer.type} to SUBSCRIBE")
        self.framework_id, self.secret = answer.framework_id, answer.secret
        # The master declared and bound it before it answered (of whatever type its cluster uses).
        queue = await self._bus.existing_queue(wire.framework_queue(self.framework_id))
        # Only the leading master sends here, with its epoch (and, outside development mode, as its
        # principal: checked before the epoch, so nobody else can move it).
        self._bus.consume(
            queue,
            wire.FRAMEWORK_EVENTS,
            self._on_event,
            fence=True,
            stamped=wire.FRAMEWORK_EVENTS.models,
            authorize=self._from_master,
        )
        # The private reply queue stays: answers to our calls that cannot go to our framework queue
        # (say, a refused call) come here, and join the same event stream.
        self._reply_queue = replies.name
        self._bus.consume(replies, wire.REPLIES, self._on_event, authorize=self._answer_from)
        self._heartbeats = asyncio.create_task(self._heartbeat_loop(), name=f"heartbeats:{self.name}")
        log.info("framework %s subscribed as %s", self.name, self.framework_id)
        return self.framework_id

    def _from_master(self, message: wire.Message, user: str | None) -> str | None:
        identity = self._bus.identity
        return None if identity is None else wire.refusal(message.type, user, identity.principals.master)

    def _answer_from(self, message: wire.Message, user: str | None) -> str | None:
        """Answers come from the master, and logs from the agent the task ran on."""
        identity = self._bus.identity
        if identity is None:
            return None
        if isinstance(message, wire.TaskLogs):
            sender = wire.identify(user)
            if sender is not None and sender.kind == "agent" and sender.principals == identity.principals:
                return None
        return wire.refusal(message.type, user, identity.principals.master)

    async def _heartbeat_loop(self) -> None:
        """Tell the master we are here; when this stops, our failover timeout starts."""
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            await self._call(wire.FrameworkHeartbeat(framework_id=self._id))

    async def close(self) -> None:
        """Stop receiving and disconnect (the framework stays registered). Safe twice."""
        if self._closed:
            return
        self._closed = True
        if self._heartbeats is not None:
            self._heartbeats.cancel()
        for span in self._decisions.values():
            span.end()
        self._decisions.clear()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._acks.drain(), 5)
        await self._bus.close()
        self._events.put_nowait(None)

    async def __aenter__(self) -> Self:
        await self.subscribe()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- events ------------------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """Events in arrival order, until :meth:`close`."""
        while (event := await self._events.get()) is not None:
            yield event

    async def _on_event(self, message: wire.Message, _: AbstractIncomingMessage) -> None:
        if isinstance(message, wire.Subscribed | wire.TaskLogs):
            return  # a late answer to a re-sent SUBSCRIBE, or to a call nobody waits for any more
        match message:
            case wire.Offers():
                for offer in message.offers:
                    self.stats.offers_received += 1
                    self._allocated_at[offer.offer_id] = offer.allocated_at
                    # The offer carries its own cycle's trace (offers of several cycles share a message).
                    parent = tracing.extract(offer.trace) if offer.trace else None
                    self._decisions[offer.offer_id] = self._tracer.start_span(
                        "framework decide",
                        context=parent,
                        attributes={
                            "meseta.service": "framework",
                            "meseta.offer_id": offer.offer_id,
                            "meseta.agent_id": offer.agent_id,
                            "meseta.framework_id": offer.framework_id,
                            "meseta.framework_name": self.name,
                        },
                    )
            case wire.Rescind():
                self.stats.offers_rescinded += 1
                self._decide([message.offer_id], "rescinded")
            case wire.Updates():
                if len(message.statuses) == 1:
                    # A batch of one came in its task's trace: its consumer span is the status's own.
                    trace.get_current_span().update_name("framework UPDATE")
                    await self._on_event(
                        wire.Update(framework_id=message.framework_id, status=message.statuses[0]), _
                    )
                    return
                traces = message.traces or ({},) * len(message.statuses)
                for status, context in zip(message.statuses, traces, strict=False):
                    # One span per status, in its own task's trace, as a single UPDATE would have had.
                    with self._tracer.start_as_current_span(
                        "framework UPDATE",
                        context=tracing.extract(context) if context else None,
                        kind=trace.SpanKind.CONSUMER,
                        attributes={"meseta.service": "framework", "meseta.message.type": "UPDATE"},
                    ):
                        update = wire.Update(framework_id=message.framework_id, status=status)
                        await self._on_event(update, _)
                return
            case wire.Update():
                uuid = message.status.uuid
                duplicate = uuid in self._seen_updates
                if not duplicate:
                    _remember(self._seen_updates, uuid)
                    self._observe_status(message.status)
                # A resent update is acknowledged again only where the framework acknowledged it (that
                # acknowledgement was lost); one it has not acknowledged yet is held for it: the agent
                # keeps resending until the framework calls acknowledge() (at least once, never for it).
                if self.auto_acknowledge or (duplicate and uuid in self._acknowledged):
                    await self.acknowledge(message.status)
                if duplicate:
                    # Updates are delivered at least once; the scheduler sees each exactly once.
                    self.stats.duplicate_updates += 1
                    return
            case wire.RevocationNotice():
                self.stats.revocation_notices += 1
                log.warning(
                    "framework %s: tasks %s revoked in %.1f s",
                    self.name,
                    message.task_ids,
                    message.grace_seconds,
                )
            case wire.DrainNotice():
                self.stats.drain_notices += 1
                log.warning(
                    "framework %s: agent %s drains; tasks %s are killed in %.1f s",
                    self.name,
                    message.agent_id,
                    message.task_ids,
                    message.deadline - time.time(),
                )
            case wire.Error():
                self.stats.errors += 1
                log.warning(
                    "framework %s: master refused a call: %s %s", self.name, message.code, message.message
                )
        self._events.put_nowait(message)  # type: ignore[arg-type]

    def _observe_status(self, status: TaskStatus) -> None:
        allocated_at = self._launched_from.pop(status.task_id, None)
        # An update from no agent is the master's (a refused launch): no offer cycle ended there.
        if allocated_at is not None and status.agent_id is not None:
            self.stats.cycle_seconds.append(max(0.0, status.timestamp - allocated_at))

    def _decide(
        self, offer_ids: Iterable[str], decision: str, attributes: dict[str, int] | None = None
    ) -> trace.Span | None:
        """End the decision spans of these offers; return the first, to parent the call."""
        first: trace.Span | None = None
        for offer_id in offer_ids:
            span = self._decisions.pop(offer_id, None)
            self._allocated_at.pop(offer_id, None)
            if span is None:
                continue
            span.set_attribute("meseta.decision", decision)
            span.set_attributes(attributes or {})
            span.end()
            first = first or span
        return first

    # --- calls -------------------------------------------------------------------------------------------

    @property
    def _id(self) -> str:
        if self.framework_id is None:
            raise RuntimeError("subscribe() first")
        return self.framework_id

    async def _call(self, call: wire.FrameworkCall, parent: trace.Span | None = None) -> None:
        context = trace.set_span_in_context(parent) if parent is not None else None
        call = call.model_copy(update={"secret": self.secret or ""})
        # Calls do not wait for the broker's confirm: a scheduler answering a batch of offers one by one
        # would otherwise pay a broker round trip per offer. Order is kept.
        await self._bus.publish(
            wire.Exchange.CALLS,
            wire.RoutingKey.CALL,
            call,
            context=context,
            reply_to=self._reply_queue,
            wait=False,
        )

    async def accept(
        self, offer_ids: Iterable[str], tasks: Iterable[TaskInfo], refuse_seconds: float = 0.0
    ) -> str:
        """Launch ``tasks`` on the offers (all of one agent); the remainder goes back to the pool.

        Returns the call's message id, which an ERROR event names in its ``correlation_id``.
        """
        ids, tasks = tuple(offer_ids), tuple(tasks)
        allocated = min((self._allocated_at.pop(i) for i in ids if i in self._allocated_at), default=None)
        if allocated is not None:
            for task in tasks:
                self._launched_from[task.task_id] = allocated
        parent = self._decide(ids, "accept", {"meseta.task_count": len(tasks)})
        call = wire.Accept(framework_id=self._id, offer_ids=ids, tasks=tasks, refuse_seconds=refuse_seconds)
        self.stats.offers_accepted += len(ids)
        self.stats.tasks_launched += len(tasks)
        await self._call(call, parent)
        return call.message_id

    async def decline(self, offer_ids: Iterable[str], refuse_seconds: float = DEFAULT_REFUSE_SECONDS) -> None:
        """Give offers back; their agents are not offered to us again for ``refuse_seconds``."""
        ids = tuple(offer_ids)
        parent = self._decide(ids, "decline")
        self.stats.offers_declined += len(ids)
        await self._call(
            wire.Decline(framework_id=self._id, offer_ids=ids, refuse_seconds=refuse_seconds), parent
        )

    async def kill(self, task_id: str, grace_seconds: float | None = None) -> None:
        """Kill one of our tasks: KILLING, then KILLED. The agent sends the task's ``kill_signal``, and
        SIGKILL after ``grace_seconds`` (the task's ``kill_grace_seconds`` when None)."""
        await self._call(wire.Kill(framework_id=self._id, task_id=task_id, grace_seconds=grace_seconds))

    async def acknowledge(self, status: TaskStatus) -> None:
        """Tell the agent we have this update, so it stops keeping it (sent in a batch within a few ms)."""
        if status.agent_id is None:
            return
        await self.acknowledge_update(
            wire.Acknowledged(agent_id=status.agent_id, task_id=status.task_id, uuid=status.uuid)
        )

    async def acknowledge_update(self, ack: wire.Acknowledged) -> None:
        """:meth:`acknowledge` by the update's agent, task and uuid (what a Mesos ACKNOWLEDGE names)."""
        if not self.auto_acknowledge:
            _remember(self._acknowledged, ack.uuid)
        self._acks.add(ack)

    async def _send_acks(self, acks: list[wire.Acknowledged]) -> None:
        await self._call(wire.Acknowledge(framework_id=self._id, acks=tuple(acks)))

    async def suppress(self) -> None:
        """Receive no offers until :meth:`revive`."""
        await self._call(wire.Suppress(framework_id=self._id))

    async def revive(self) -> None:
        """Receive offers again; decline filters are dropped."""
        await self._call(wire.Revive(framework_id=self._id))

    async def send_to_executor(self, agent_id: str, executor_id: str, data: str) -> None:
        """Send opaque data to one of our executors; its ``framework_message`` callback receives it."""
        await self._call(
            wire.SendToExecutor(framework_id=self._id, agent_id=agent_id, executor_id=executor_id, data=data)
        )

    async def logs(self, task_id: str, tail_bytes: int = 65536) -> wire.TaskLogs:
        """One of our tasks' stdout and stderr (kept for the agent's retention after it ends)."""
        return await fetch_logs(self._bus, task_id, self._id, tail_bytes)

    async def reconcile(self, task_ids: Iterable[str] = ()) -> None:
        """Ask for our tasks' states (all, when no ids are given): UPDATEs with reason RECONCILIATION."""
        await self._call(wire.Reconcile(framework_id=self._id, task_ids=tuple(task_ids)))

    async def set_filters(self, filters: wire.OfferFilters) -> None:
        """Replace the standing filters: from now on only offers that pass them arrive (durably)."""
        self.filters = filters
        await self._call(wire.SetFilters(framework_id=self._id, filters=filters))

    async def teardown(self) -> None:
        """Unregister: the master kills our tasks and forgets us."""
        await self._call(wire.Teardown(framework_id=self._id))


def _remember(seen: OrderedDict[str, None], uuid: str) -> None:
    """Add a uuid to a bounded memory, forgetting the oldest past :data:`_SEEN_UPDATES`."""
    seen[uuid] = None
    if len(seen) > _SEEN_UPDATES:
        seen.popitem(last=False)


def offer_cycle_percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds of cycle times in seconds (:func:`meseta.sdk.stats.percentile`);
    (nan, nan) with no samples."""
    return percentile(samples, 50) * 1000, percentile(samples, 99) * 1000
