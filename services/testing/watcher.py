"""A test framework that launches what it is given on the offers it gets and keeps every status it hears.

The lifecycle tests (kills, health checks, pulls, partitions) ask about a task's whole history, not only
its first state: ``TaskWatcher`` keeps it, and lets a test wait on any condition over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Self

from meseta.sdk import FrameworkClient, wire


class TaskWatcher:
    """Launches queued tasks (on a chosen agent, or any) and records every status, per task."""

    def __init__(self, client: FrameworkClient) -> None:
        self.client = client
        self.history: dict[str, list[wire.TaskStatus]] = {}
        self._queue: list[tuple[wire.TaskInfo, str | None]] = []
        self._changed = asyncio.Condition()
        self._loop: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._loop = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    async def launch(self, *tasks: wire.TaskInfo, on: str | None = None) -> None:
        """Launch ``tasks`` on the next offers that fit (from agent ``on``, when given); tasks given in one
        call that fit one offer go in one ACCEPT, so the agent launches them together."""
        self._queue.extend((task, on) for task in tasks)
        await self.client.revive()

    def states(self, task_id: str) -> list[wire.TaskState]:
        return [s.state for s in self.history.get(task_id, [])]

    def last(self, task_id: str) -> wire.TaskStatus | None:
        seen = self.history.get(task_id)
        return seen[-1] if seen else None

    async def until(
        self, task_id: str, check: Callable[[wire.TaskStatus], bool], timeout: float, what: str
    ) -> wire.TaskStatus:
        """The first status of ``task_id`` (already heard or still to come) for which ``check`` holds."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                found = next((s for s in self.history.get(task_id, []) if check(s)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    heard = [(s.state.value, s.reason, s.message) for s in self.history.get(task_id, [])]
                    raise AssertionError(f"{task_id}: no {what} within {timeout} s; heard {heard}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)

    async def until_state(
        self, task_id: str, state: wire.TaskState, timeout: float = 30.0
    ) -> wire.TaskStatus:
        return await self.until(task_id, lambda s: s.state == state, timeout, state.value)

    async def _run(self) -> None:
        async for event in self.client.events():
            if isinstance(event, wire.Offers):
                await self._place(event.offers)
            elif isinstance(event, wire.Update):
                async with self._changed:
                    self.history.setdefault(event.status.task_id, []).append(event.status)
                    self._changed.notify_all()

    async def _place(self, offers: tuple[wire.Offer, ...]) -> None:
        for offer in offers:
            fits = [
                (task, want)
                for task, want in self._queue
                if want in (None, offer.agent_id) and task.resources.fits_in(offer.resources)
            ]
            if not fits:
                await self.client.decline([offer.offer_id], refuse_seconds=1)
                continue
            left, chosen = offer.resources, []
            for task, want in fits:
                if task.resources.fits_in(left):
                    chosen.append(task)
                    left = left - task.resources
                    self._queue.remove((task, want))
            await self.client.accept([offer.offer_id], chosen)
