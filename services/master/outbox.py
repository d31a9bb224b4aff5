"""Everything the master sends, and where it goes: agents, frameworks, the allocator, a caller.

Handlers never name an exchange or a routing key; they tell the outbox whom a message is for. The outbox
publishes through a :class:`Publisher` (the bus in a service, a recorder in the unit tests), so every
handler can be driven with no broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from meseta.master.events import EventHub
from meseta.sdk import wire
from meseta.sdk.wire import Resources

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """What the outbox needs of the bus."""

    async def publish(
        self,
        exchange: wire.Exchange | str,
        routing_key: str,
        message: wire.Message,
        *,
        persistent: bool = False,
    ) -> None: ...

    async def declare_queue(
        self,
        name: str,
        exchange: wire.Exchange,
        routing_key: str,
        *,
        durable: bool = True,
        expires_ms: int | None = None,
        replicated: bool = False,
    ) -> Any: ...

    async def delete_queue(self, name: str) -> None: ...


class Outbox:
    """The master's messages to the rest of the cluster."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.events: EventHub | None = None
        """Where each task status sent to a framework is also told to operators (the master's)."""
        self._recovered: list[wire.Recovered] = []
        """Resources found unused while a message was handled: given back in one message."""
        self._syncing = asyncio.Lock()
        """Held while a view's parts go to the allocator: nothing else of ours goes between them."""
        self._owed: Callable[[], Sequence[wire.StateSync]] | None = None
        """A view owed to the allocator (:meth:`sync_allocator_soon`), not taken yet."""
        self._owed_sender: asyncio.Task[None] | None = None
        self.owed_syncs = 0
        """Views sent for what was owed (for tests and operators)."""

    # --- by recipient ------------------------------------------------------------------------------------

    async def to_allocator(self, message: wire.Message) -> None:
        while self._syncing.locked():
            # After the view being sent: the allocator applies a view once its last part has come, and
            # this message follows from a state the view does not hold.
            async with self._syncing:
                pass
        await self._to_allocator(message)

    async def _to_allocator(self, message: wire.Message) -> None:
        await self.publisher.publish(wire.Exchange.ALLOCATION, wire.RoutingKey.TO_ALLOCATOR, message)

    async def sync_allocator(self, view: Callable[[], Sequence[wire.StateSync]]) -> None:
        """The master's whole view to the allocator, taken (``view()``) once no other view is on its way,
        its parts in order with nothing of ours between them."""
        async with self._syncing:
            for part in view():
                await self._to_allocator(part)

    def sync_allocator_soon(self, view: Callable[[], Sequence[wire.StateSync]]) -> None:
        """The whole view to the allocator soon, once for however many ask before it is taken.

        After a failover every agent that runs tasks registers again, and each sent the whole view: one
        per agent, each of them as big as the cluster (quadratic: gigabytes at 10,000 agents). Owed
        instead, and sent by one task: a view is taken when it is sent, so it holds every change made
        before, and whoever owes one after it was taken gets another. Meanwhile the allocator does not
        know the agent (it ignores events for agents it does not know), so nothing on it is offered.
        """
        self._owed = view
        if self._owed_sender is None or self._owed_sender.done():
            self._owed_sender = asyncio.get_running_loop().create_task(self._send_owed(), name="owed sync")

    async def _send_owed(self) -> None:
        await asyncio.sleep(0)  # the handler that owed it, and the deliveries already read, go first
        while (view := self._owed) is not None:
            self._owed = None  # before the view is taken (under the lock): a later change owes again
            try:
                await self.sync_allocator(view)
            except Exception as exc:  # the bus is going: the sweep's periodic view carries it
                log.warning("a view owed to the allocator was not sent (%r)", exc)
                return
            self.owed_syncs += 1

    async def flush_owed(self) -> None:
        """Wait until what is owed to the allocator has been sent."""
        while self._owed_sender is not None and not self._owed_sender.done():
            await asyncio.shield(self._owed_sender)

    def cancel_owed(self) -> None:
        """At stop: nothing more is sent."""
        if self._owed_sender is not None:
            self._owed_sender.cancel()

    async def to_framework(self, framework_id: str, message: wire.Message) -> None:
        await self.publisher.publish(wire.Exchange.OFFERS, framework_id, message)

    async def to_agent(self, agent_id: str, message: wire.Message) -> None:
        # Persistent: a launch or a kill must survive a broker restart (agent queues are durable).
        await self.publisher.publish(wire.Exchange.LAUNCHES, agent_id, message, persistent=True)

    async def to_all_agents(self, message: wire.Message) -> None:
        """One broadcast: every agent's queue is bound with the ``all-agents`` key."""
        await self.publisher.publish(wire.Exchange.LAUNCHES, wire.RoutingKey.ALL_AGENTS, message)

    async def to_caller(self, reply_to: str | None, message: wire.Message) -> None:
        """An answer to the private queue of the call it answers; nowhere when the call named none."""
        if reply_to:
            await self.publisher.publish("", reply_to, message)
        else:
            log.info("no reply queue to answer on: %s dropped", message.type)

    async def open_framework_queue(self, framework_id: str) -> None:
        """Declare a framework's queue, before anything can be routed to it."""
        await self.publisher.declare_queue(
            wire.framework_queue(framework_id), wire.Exchange.OFFERS, framework_id, replicated=True
        )

    async def open_executor_queue(self, agent_id: str, framework_id: str, executor_id: str) -> None:
        """Declare an executor's queue before its agent starts it: an executor's principal may read its
        queue but not bind one (that would let it read any key of the launches exchange)."""
        key = wire.executor_key(agent_id, framework_id, executor_id)
        await self.publisher.declare_queue(
            wire.executor_queue(key),
            wire.Exchange.LAUNCHES,
            key,
            durable=False,
            expires_ms=wire.EXECUTOR_QUEUE_EXPIRES_MS,
        )

    async def close_framework_queue(self, framework_id: str) -> None:
        """Delete a removed framework's queue: nobody reads it, and it held the broker's memory for ever."""
        await self.publisher.delete_queue(wire.framework_queue(framework_id))

    # --- what is said often ------------------------------------------------------------------------------

    async def kill_on(
        self,
        agent_id: str,
        framework_id: str,
        task_id: str,
        reason: wire.StatusReason,
        grace_seconds: float | None = None,
    ) -> None:
        """Tell an agent to kill a task, and why (``grace_seconds`` overrides the task's own)."""
        kill = wire.KillTask(
            agent_id=agent_id,
            framework_id=framework_id,
            task_id=task_id,
            reason=reason,
            grace_seconds=grace_seconds,
        )
        await self.to_agent(agent_id, kill)

    async def statuses(
        self,
        framework_id: str,
        statuses: Sequence[wire.TaskStatus],
        traces: Sequence[dict[str, str]] = (),
    ) -> None:
        """UPDATES of at most ``MAX_BATCH`` statuses (each with its trace, where given)."""
        if self.events is not None:
            for status in statuses:
                self.events.emit(
                    "TASK_UPDATED",
                    framework_id=framework_id,
                    task_id=status.task_id,
                    state=status.state.value,
                    agent_id=status.agent_id,
                    reason=None if status.reason is None else status.reason.value,
                )
        for i in range(0, len(statuses), wire.MAX_BATCH):
            batch = wire.Updates(
                framework_id=framework_id,
                statuses=tuple(statuses[i : i + wire.MAX_BATCH]),
                traces=tuple(traces[i : i + wire.MAX_BATCH]),
            )
            await self.to_framework(framework_id, batch)

    async def acknowledge_updates(
        self, agent_id: str, framework_id: str | None, uuids: Sequence[str]
    ) -> None:
        """The agent may forget these updates of ``framework_id`` (of any framework with None: the master's
        own acknowledgement for frameworks that are gone), in ACKNOWLEDGE_UPDATES of at most ``MAX_BATCH``."""
        for i in range(0, len(uuids), wire.MAX_BATCH):
            chunk = tuple(uuids[i : i + wire.MAX_BATCH])
            ack = wire.AcknowledgeUpdates(agent_id=agent_id, framework_id=framework_id, uuids=chunk)
            await self.to_agent(agent_id, ack)

    def recover_later(
        self, framework_id: str, agent_id: str, resources: Resources, refuse_seconds: float = 0.0
    ) -> None:
        """Give resources back to the allocator with the next :meth:`flush_recovered`."""
        if not resources.is_empty():
            self._recovered.append(
                wire.Recovered(
                    framework_id=framework_id,
                    agent_id=agent_id,
                    resources=resources,
                    refuse_seconds=refuse_seconds,
                )
            )

    async def flush_recovered(self) -> None:
        """Send what :meth:`recover_later` gathered, in RESOURCES_RECOVERED of at most ``MAX_BATCH``."""
        items, self._recovered = self._recovered, []
        for i in range(0, len(items), wire.MAX_BATCH):
            await self.to_allocator(wire.ResourcesRecovered(items=tuple(items[i : i + wire.MAX_BATCH])))

    async def recover(
        self, framework_id: str, agent_id: str, resources: Resources, refuse_seconds: float = 0.0
    ) -> None:
        """Give resources back now (with anything else gathered)."""
        self.recover_later(framework_id, agent_id, resources, refuse_seconds)
        await self.flush_recovered()
