"""A long-running service framework (Marathon-like): keeps ``instances`` copies running, one per agent,
restarts failed or lost ones on other agents, can require GPUs, and scales on command."""

from __future__ import annotations

import itertools
import time

from meseta.examples.common import TrackedScheduler
from meseta.sdk import ContainerSpec, FrameworkClient, OfferFilters, Resources, TaskInfo, TaskStatus, wire
from meseta.sdk.helpers import satisfies

DEFAULT_IMAGE = "meseta-task:latest"
DECLINE_SECONDS = 1.0
AVOID_SECONDS = 30.0
"""How long an agent where a copy failed (or that was lost) gets no new copy."""


class ServiceApp(TrackedScheduler):
    """The service.

    Args:
        instances: how many copies to keep running.
        resources: of each copy (``gpus`` > 0 makes it a GPU service: only GPU agents are offered).
        command: what each copy runs.
    """

    def __init__(
        self,
        instances: int = 2,
        resources: Resources = Resources(cpus=0.25, mem=64),  # noqa: B008 - frozen model
        command: str = "echo serving on $HOSTNAME; exec sleep 3600",
        image: str = DEFAULT_IMAGE,
    ) -> None:
        super().__init__()
        self.instances = instances
        self.resources = resources
        self.container = ContainerSpec.shell(image, command)
        self.placed: dict[str, str] = {}
        """Task id -> agent id of each live copy."""
        self.avoid: dict[str, float] = {}
        """Agent -> until when new copies go elsewhere (a copy failed there, or it was lost)."""
        self.lost_agents: list[str] = []
        """Agents the master reported lost (FAILURE events), in order."""
        self._ids = itertools.count()
        self._killing: set[str] = set()

    def filters(self) -> OfferFilters:
        """Standing filters for the client: GPU services see only GPU agents."""
        return OfferFilters(min_resources=Resources(gpus=self.resources.gpus))

    @property
    def running(self) -> int:
        """Copies the agents report RUNNING."""
        return sum(1 for t in self.placed if self.states.get(t) == wire.TaskState.RUNNING)

    async def offers(self, client: FrameworkClient, offers: tuple[wire.Offer, ...]) -> None:
        for offer in offers:
            wanted = self.instances - len(self.placed)
            usable = (
                wanted > 0
                and offer.agent_id not in self.placed.values()
                and self.avoid.get(offer.agent_id, 0.0) <= time.monotonic()
                and satisfies(offer, min_gpus=self.resources.gpus)
                and self.resources.fits_in(offer.resources)
            )
            if not usable:
                await client.decline([offer.offer_id], refuse_seconds=DECLINE_SECONDS)
                continue
            task = TaskInfo(
                task_id=f"web-{next(self._ids)}",
                name="web",
                resources=self.resources,
                container=self.container,
            )
            self.placed[task.task_id] = offer.agent_id
            self.states[task.task_id] = wire.TaskState.STAGING
            await client.accept([offer.offer_id], [task])

    async def on_status(self, client: FrameworkClient, status: TaskStatus) -> None:
        if status.state.terminal and status.task_id in self.placed:
            agent = self.placed.pop(status.task_id)
            if status.task_id not in self._killing:
                self.avoid[agent] = (
                    time.monotonic() + AVOID_SECONDS
                )  # it failed or was lost there: go elsewhere
                await client.revive()
            self._killing.discard(status.task_id)
        if self.running == self.instances == len(self.placed):
            self.done.set()

    async def agent_lost(self, client: FrameworkClient, agent_id: str) -> None:
        self.lost_agents.append(agent_id)
        self.avoid[agent_id] = time.monotonic() + AVOID_SECONDS

    async def scale(self, client: FrameworkClient, instances: int) -> None:
        """Run ``instances`` copies from now on: extra ones are killed, missing ones launched.

        ``done`` is set again once the service runs exactly that many.
        """
        self.instances = instances
        extra = sorted(self.placed)[instances:]
        if extra or len(self.placed) < instances:
            self.done.clear()
        for task_id in extra:
            self._killing.add(task_id)
            await client.kill(task_id)
        if len(self.placed) < instances:
            await client.revive()
