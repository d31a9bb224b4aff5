"""What every example shares: the last state of each task, and a 'done' signal."""

from __future__ import annotations

import asyncio
from collections import Counter

from meseta.sdk import FrameworkClient, Scheduler, TaskState, TaskStatus


class TrackedScheduler(Scheduler):
    """A scheduler that remembers the last state of each of its tasks and can say it is done."""

    def __init__(self) -> None:
        self.states: dict[str, TaskState] = {}
        self.first_seen: dict[str, dict[TaskState, float]] = {}
        """Task id -> state -> when the agent first reported it."""
        self.done = asyncio.Event()

    def counts(self) -> Counter[str]:
        """Tasks by their last state."""
        return Counter(state.value for state in self.states.values())

    async def status_update(self, client: FrameworkClient, status: TaskStatus) -> None:
        self.states[status.task_id] = status.state
        self.first_seen.setdefault(status.task_id, {}).setdefault(status.state, status.timestamp)
        await self.on_status(client, status)

    async def on_status(self, client: FrameworkClient, status: TaskStatus) -> None:
        """Subclasses react to a task's new state here."""
