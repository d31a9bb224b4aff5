"""A batch framework that survives a master failover, as Mesos recommends frameworks do.

Accepts refused after a failover (the offers died with the old master) may or may not have launched:
their tasks are reconciled after a pause, and only relaunched when the new master says LOST. The master's
LOST (INVALID_OFFERS) for a refused accept does not settle it: the deposed master may have launched the
tasks before it died, and the accept then came again to the new one.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from meseta.sdk import FrameworkClient, wire
from meseta.sdk.helpers import first_fit

RECONCILE_AFTER = 2.0


class ResilientBatch:
    """Runs ``tasks`` to completion across failovers; counts terminal updates per task."""

    def __init__(self, client: FrameworkClient, tasks: list[wire.TaskInfo]) -> None:
        self.client = client
        self.by_id = {t.task_id: t for t in tasks}
        self.pending = list(tasks)
        self.calls: dict[str, list[str]] = {}
        self.uncertain: set[str] = set()
        self.terminal: Counter[str] = Counter()
        self.states: dict[str, wire.TaskState] = {}
        self.offer_times: list[tuple[float, int]] = []
        """(when, newest leader epoch heard) of each offer event."""
        self.deliveries: Counter[str] = Counter()
        """Updates the scheduler saw, by uuid: each once, however often it came over the wire."""
        self.done = asyncio.Event()

    async def run(self) -> None:
        async for event in self.client.events():
            if isinstance(event, wire.Update):
                self.deliveries[event.status.uuid] += 1
            match event:
                case wire.Offers():
                    self.offer_times.append((time.time(), self.client._bus.epochs_accepted[-1]))
                    for offer in event.offers:
                        chosen = first_fit(offer, self.pending)
                        if not chosen:
                            await self.client.decline([offer.offer_id], refuse_seconds=0.5)
                            continue
                        self.pending = [t for t in self.pending if t not in chosen]
                        call_id = await self.client.accept([offer.offer_id], chosen)
                        self.calls[call_id] = [t.task_id for t in chosen]
                case wire.Error() if event.correlation_id in self.calls:
                    tasks = self.calls.pop(event.correlation_id or "")
                    self.uncertain.update(tasks)
                    asyncio.get_running_loop().call_later(
                        RECONCILE_AFTER, lambda ids=tasks: asyncio.ensure_future(self.client.reconcile(ids))
                    )
                case wire.Update() if event.status.reason == wire.StatusReason.INVALID_OFFERS:
                    # The new master refused the accept, but the deposed one may have launched it before
                    # it died (the accept then came again): the ERROR's reconciliation decides.
                    pass
                case wire.Update() if event.status.reason == wire.StatusReason.RECONCILIATION:
                    task_id = event.status.task_id
                    if task_id in self.uncertain and event.status.state == wire.TaskState.LOST:
                        self.uncertain.discard(task_id)
                        self.pending.append(self.by_id[task_id])
                        await self.client.revive()
                    elif task_id in self.uncertain:
                        self.uncertain.discard(task_id)  # it runs after all: wait for its updates
                case wire.Update():
                    self.states[event.status.task_id] = event.status.state
                    self.uncertain.discard(event.status.task_id)
                    if event.status.state.terminal:
                        self.terminal[event.status.task_id] += 1
                        if set(self.terminal) >= set(self.by_id):
                            self.done.set()
