"""The demo's two frameworks, written against the SDK's callback style.

``BatchFramework`` runs N short tasks as fast as offers allow (first-fit packing); ``ServiceFramework``
keeps K long tasks running, one per agent where it can, and declines what it does not need.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from meseta.sdk import (
    ContainerSpec,
    FrameworkClient,
    Resources,
    Scheduler,
    TaskInfo,
    TaskState,
    TaskStatus,
    wire,
)
from meseta.sdk.helpers import first_fit

DECLINE_SECONDS = 2.0


class Tracked(Scheduler):
    """A scheduler that remembers the last state of each of its tasks."""

    def __init__(self) -> None:
        self.states: dict[str, TaskState] = {}
        self.done = asyncio.Event()

    def counts(self) -> Counter[str]:
        """Tasks by state."""
        return Counter(state.value for state in self.states.values())

    async def status_update(self, client: FrameworkClient, status: TaskStatus) -> None:
        self.states[status.task_id] = status.state
        await self.on_status(client, status)

    async def on_status(self, client: FrameworkClient, status: TaskStatus) -> None:
        """Subclasses react to a task's state change here."""


class BatchFramework(Tracked):
    """Runs ``count`` short tasks of random length; done when all are terminal."""

    def __init__(self, image: str, count: int, seed: int = 7) -> None:
        super().__init__()
        rng = random.Random(seed)
        self.pending = [
            TaskInfo(
                task_id=f"batch-{i}",
                name=f"map {i}",
                resources=Resources(cpus=0.5, mem=32),
                container=ContainerSpec.shell(image, f"echo batch {i}; sleep {rng.uniform(0.2, 1.5):.2f}"),
            )
            for i in range(count)
        ]
        for task in self.pending:
            self.states[task.task_id] = TaskState.STAGING

    async def offers(self, client: FrameworkClient, offers: tuple[wire.Offer, ...]) -> None:
        for offer in offers:
            chosen = first_fit(offer, self.pending)
            if not chosen:
                await client.decline([offer.offer_id], refuse_seconds=DECLINE_SECONDS)
                continue
            self.pending = [t for t in self.pending if t not in chosen]
            await client.accept([offer.offer_id], chosen)

    async def on_status(self, client: FrameworkClient, status: TaskStatus) -> None:
        if all(s.terminal for s in self.states.values()):
            self.done.set()
            await client.suppress()


class ServiceFramework(Tracked):
    """Keeps ``instances`` long-running tasks up, spread over agents; restarts any that fail."""

    def __init__(self, image: str, instances: int) -> None:
        super().__init__()
        self.image = image
        self.instances = instances
        self.placed: dict[str, str] = {}
        """Task id -> agent id of live instances."""
        self.stopping = False
        self._generation = 0

    def _wanted(self) -> int:
        return 0 if self.stopping else self.instances - len(self.placed)

    async def offers(self, client: FrameworkClient, offers: tuple[wire.Offer, ...]) -> None:
        for offer in offers:
            task = TaskInfo(
                task_id=f"web-{self._generation}",
                name="web server",
                resources=Resources(cpus=0.25, mem=64),
                container=ContainerSpec.shell(self.image, "echo serving; exec sleep 3600"),
            )
            spread = offer.agent_id not in self.placed.values()
            if self._wanted() > 0 and spread and task.resources.fits_in(offer.resources):
                self._generation += 1
                self.placed[task.task_id] = offer.agent_id
                self.states[task.task_id] = TaskState.STAGING
                await client.accept([offer.offer_id], [task])
            else:
                await client.decline([offer.offer_id], refuse_seconds=DECLINE_SECONDS)

    async def on_status(self, client: FrameworkClient, status: TaskStatus) -> None:
        if status.state.terminal:
            self.placed.pop(status.task_id, None)
        running = sum(1 for s in self.states.values() if s == TaskState.RUNNING)
        if not self.stopping and running >= self.instances:
            self.done.set()
        if self.stopping and not self.placed:
            self.done.set()

    async def stop(self, client: FrameworkClient) -> None:
        """Kill every instance; ``done`` is set again when all are gone."""
        self.stopping = True
        self.done.clear()
        if not self.placed:
            self.done.set()
        for task_id in list(self.placed):
            await client.kill(task_id)
