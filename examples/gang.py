"""An MPI-like rigid job: it needs ``size`` slots at once and runs only when it holds them all.

Offers are held (not accepted) while the gang forms; if it has not formed within ``timeout`` seconds,
everything held is declined so nothing is hoarded, and it tries again. If any member ends badly while the
gang runs (revoked, lost, failed), the others are killed and the whole gang restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from meseta.examples.common import TrackedScheduler
from meseta.sdk import ContainerSpec, FrameworkClient, Resources, TaskInfo, TaskStatus, wire
from meseta.sdk.helpers import Gang

DEFAULT_IMAGE = "meseta-task:latest"


class GangJob(TrackedScheduler):
    """The job.

    Args:
        size: slots the gang needs at once. slot: resources of one slot.
        timeout: seconds a forming gang holds offers before it releases them.
        task_seconds: how long each rank runs.
    """

    def __init__(
        self,
        size: int = 4,
        slot: Resources = Resources(cpus=0.5, mem=32),  # noqa: B008 - frozen model
        timeout: float = 10.0,
        task_seconds: float = 1.0,
        image: str = DEFAULT_IMAGE,
    ) -> None:
        super().__init__()
        self.gang = Gang(size, slot, timeout)
        self.image = image
        self.task_seconds = task_seconds
        self.generation = 0
        self.running_gang: set[str] = set()
        """Task ids of the launched gang, until it finishes or is torn down."""
        self.launches: list[tuple[float, int]] = []
        """(when, how many tasks) of every launch: one entry per gang, never a partial one."""
        self.releases = 0
        self._restarting: set[str] = set()
        self._timer: asyncio.Task[None] | None = None

    def _rank(self, index: int) -> TaskInfo:
        task_id = f"rank-{self.generation}-{index}"
        script = f"echo rank {index} of {self.gang.size}; sleep {self.task_seconds}"
        return TaskInfo(
            task_id=task_id,
            name=task_id,
            resources=self.gang.slot,
            container=ContainerSpec.shell(self.image, script),
        )

    async def registered(self, client: FrameworkClient, framework_id: str) -> None:
        self._timer = asyncio.create_task(self._release_when_expired(client))

    async def _release_when_expired(self, client: FrameworkClient) -> None:
        while not self.done.is_set():
            await asyncio.sleep(0.1)
            if not self.running_gang and self.gang.expired():
                self.releases += 1
                await client.decline(self.gang.release(), refuse_seconds=1.0)

    async def offers(self, client: FrameworkClient, offers: tuple[wire.Offer, ...]) -> None:
        for offer in offers:
            if self.running_gang or self.done.is_set() or not self.gang.hold(offer):
                await client.decline([offer.offer_id], refuse_seconds=1.0)
        if self.gang.ready:
            await self._launch(client)

    async def _launch(self, client: FrameworkClient) -> None:
        plan = self.gang.plan(self._rank)
        launched = [t for _, tasks in plan for t in tasks]
        self.running_gang = {t.task_id for t in launched}
        self.launches.append((time.time(), len(launched)))
        for task in launched:
            self.states[task.task_id] = wire.TaskState.STAGING
        # Every member goes out in the same breath; offers that got no member are given back.
        await asyncio.gather(
            *(
                client.accept(ids, tasks) if tasks else client.decline(ids, refuse_seconds=0)
                for ids, tasks in plan
            )
        )
        await client.suppress()

    async def rescinded(self, client: FrameworkClient, offer_id: str) -> None:
        self.gang.forget(offer_id)

    async def revoked(self, client: FrameworkClient, notice: wire.RevocationNotice) -> None:
        await self._restart(client, f"revoked: {notice.task_ids}")

    async def on_status(self, client: FrameworkClient, status: TaskStatus) -> None:
        if status.task_id not in self.running_gang or not status.state.terminal:
            return
        if status.state != wire.TaskState.FINISHED:
            await self._restart(client, f"{status.task_id} {status.state.value}")
            return
        if all(self.states[t] == wire.TaskState.FINISHED for t in self.running_gang):
            self.done.set()
            if self._timer is not None:
                self._timer.cancel()

    async def _restart(self, client: FrameworkClient, why: str) -> None:
        """Tear the running gang down and form it again: a rigid job cannot lose a rank."""
        if not self.running_gang:
            return
        members, self.running_gang = self.running_gang, set()
        for task_id in members:
            if not self.states[task_id].terminal:
                with contextlib.suppress(Exception):
                    await client.kill(task_id)
        self.generation += 1
        await client.revive()
