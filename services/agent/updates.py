"""Reliable status updates: each is checkpointed, published in a batch, and resent with back-off until its
framework acknowledges it (at least once, as in Mesos), also across an agent restart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass

from meseta.agent.checkpoint import Checkpoint
from meseta.agent.settings import DEFAULT_MAX_UNACKNOWLEDGED, DEFAULT_STATUS_RETRY
from meseta.sdk import tracing, wire
from meseta.sdk.batching import Batcher
from meseta.sdk.bus import Bus
from meseta.sdk.wire import TaskStatus

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 60.0
"""A framework away for long is asked once a minute (Mesos backs off to ten; a re-subscribed framework
here waits for the next resend, so a shorter cap)."""
RETRY_TICK = 0.25


@dataclass
class PendingUpdate:
    """A status update waiting for its acknowledgement."""

    update: wire.StatusUpdate
    due: float
    """When to resend it (monotonic clock)."""
    delay: float = DEFAULT_STATUS_RETRY


class StatusUpdater:
    """One agent's outgoing status updates, from first send to acknowledgement."""

    def __init__(
        self,
        agent_id: str,
        bus: Bus,
        checkpoint: Checkpoint,
        retry_interval: float,
        max_unacknowledged: int = DEFAULT_MAX_UNACKNOWLEDGED,
    ) -> None:
        self.agent_id = agent_id
        self.max_unacknowledged = max_unacknowledged
        self.pending: Counter[str] = Counter()
        """Unacknowledged updates per framework (:meth:`over_cap`)."""
        self.bus = bus
        self.checkpoint = checkpoint
        self.retry_interval = retry_interval
        self.unacknowledged: dict[str, PendingUpdate] = {}
        """Status updates the framework has not acknowledged yet, by uuid."""
        self.resent = 0
        """Status updates sent again for want of an acknowledgement."""
        self._batch: Batcher[wire.StatusUpdate] = Batcher(self._publish, max_items=wire.MAX_BATCH)
        self._waiting = asyncio.Event()

    async def send(self, framework_id: str, status: TaskStatus) -> None:
        """Checkpoint, then publish (persistent, in a batch with whatever else is pending), in the current
        trace (the task's offer cycle); it is resent until the framework acknowledges it."""
        update = wire.StatusUpdate(
            agent_id=self.agent_id, framework_id=framework_id, status=status, trace=tracing.inject({})
        )
        await self.checkpoint.save_update(update)
        delay = self.retry_interval
        self._track(PendingUpdate(update, due=time.monotonic() + delay, delay=delay))
        self._batch.add(update)

    async def send_once(self, framework_id: str, status: TaskStatus) -> None:
        """Publish an update that is neither checkpointed nor resent (a refusal told to a framework that is
        over :attr:`max_unacknowledged`: keeping it would grow what the cap bounds)."""
        update = wire.StatusUpdate(
            agent_id=self.agent_id, framework_id=framework_id, status=status, trace=tracing.inject({})
        )
        self._batch.add(update)

    def over_cap(self, framework_id: str) -> bool:
        """Whether the framework leaves so many updates unacknowledged here that its launches are refused:
        one that never acknowledges would otherwise grow the agent's memory and disk without bound."""
        return self.pending[framework_id] >= self.max_unacknowledged

    def _track(self, pending: PendingUpdate) -> None:
        uuid = pending.update.status.uuid
        if uuid not in self.unacknowledged:
            self.pending[pending.update.framework_id] += 1
        self.unacknowledged[uuid] = pending
        self._waiting.set()

    def acknowledged(self, uuids: tuple[str, ...], framework_id: str | None = None) -> None:
        """The framework has these: forget them. With ``framework_id``, only that framework's: an
        acknowledgement never erases another framework's update."""
        for uuid in uuids:
            pending = self.unacknowledged.get(uuid)
            if pending is None:
                if framework_id is None:
                    self.checkpoint.drop_update(uuid)
                continue
            owner = pending.update.framework_id
            if framework_id is not None and owner != framework_id:
                log.warning(
                    "acknowledgement of %s by %s ignored: the update is %s's", uuid, framework_id, owner
                )
                continue
            del self.unacknowledged[uuid]
            self.pending[owner] -= 1
            if self.pending[owner] <= 0:
                del self.pending[owner]
            self.checkpoint.drop_update(uuid)

    def recover(self) -> None:
        """After a restart: every checkpointed update is unacknowledged, and due at once."""
        for update in self.checkpoint.updates():
            self._track(PendingUpdate(update, due=0.0))
        if self.unacknowledged:
            log.info("resending %d unacknowledged status updates", len(self.unacknowledged))

    async def _publish(self, updates: list[wire.StatusUpdate]) -> None:
        message = wire.StatusUpdates(agent_id=self.agent_id, updates=tuple(updates))
        await self.bus.publish(wire.Exchange.STATUS, wire.RoutingKey.STATUS, message, persistent=True)

    async def retry_loop(self) -> None:
        """At-least-once: resend each unacknowledged update, backing off, until it is acknowledged."""
        while True:
            if not self.unacknowledged:
                # Idle agents do not tick: thousands of them in one emulator would spend a core on timers.
                self._waiting.clear()
                await self._waiting.wait()
            await asyncio.sleep(RETRY_TICK)
            now = time.monotonic()
            for pending in list(self.unacknowledged.values()):
                if pending.due <= now and pending.update.status.uuid in self.unacknowledged:
                    # In a batch with the rest, each in a new message (new id: receivers drop an id they
                    # handled, as a broker redelivery): under a launch burst acknowledgements lag, and
                    # thousands of single resends fed the backlog. Each in its task's trace.
                    self._batch.add(pending.update, tracing.extract(pending.update.trace))
                    self.resent += 1
                    pending.delay = min(pending.delay * 2, MAX_RETRY_DELAY)
                    pending.due = now + pending.delay

    async def drain(self) -> None:
        """Publish what is batched now (at stop)."""
        await self._batch.drain()
