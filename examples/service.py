"""A long-running service framework (Marathon-like): keeps ``instances`` healthy copies of an HTTP service
running, one per agent, each on a port from its offer.

Each copy is busybox's ``httpd`` serving ``/health`` and, after a moment, ``/ready``. The agent checks
``/health`` (a copy that fails it three times in a row is killed, FAILED with HEALTH_CHECK_FAILED, and
replaced) and ``/ready`` (a copy counts only once it has passed). The framework is partition-aware: a
copy on an agent that falls silent is UNREACHABLE, not replaced, and counts again when the agent comes
back RUNNING; past the master's unreachable timeout it is GONE and replaced elsewhere. It can require
GPUs, and scales on command.
"""

from __future__ import annotations

import itertools
import random
import time

from meseta.examples.common import TrackedScheduler
from meseta.sdk import (
    ContainerSpec,
    FrameworkClient,
    OfferFilters,
    PortRange,
    Resources,
    TaskInfo,
    TaskStatus,
    wire,
)
from meseta.sdk.helpers import satisfies

DEFAULT_IMAGE = "meseta-task:latest"
DECLINE_SECONDS = 1.0
AVOID_SECONDS = 30.0
"""How long an agent where a copy was lost (or that was lost) gets no new copy."""
SERVE = (
    "mkdir -p /www; echo ok > /www/health; (sleep 1; echo ok > /www/ready) & "
    "echo serving on $HOSTNAME:$PORT0; exec httpd -f -p $PORT0 -h /www"
)
"""Each copy: ``/health`` at once, ``/ready`` a second later (a service warming up)."""
HEALTH = wire.HealthCheck(
    kind="http",
    path="/health",
    interval_seconds=1.0,
    timeout_seconds=1.0,
    grace_period_seconds=5.0,
    max_consecutive_failures=3,
)
READINESS = wire.HealthCheck(kind="http", path="/ready", interval_seconds=0.5, timeout_seconds=1.0)
AGENT_FAULTS = frozenset({wire.TaskState.LOST, wire.TaskState.GONE})


class ServiceApp(TrackedScheduler):
    """The service.

    Args:
        instances: how many healthy, ready copies to keep running.
        resources: of each copy, ports aside (``gpus`` > 0 makes it a GPU service: only GPU agents are
            offered). Each copy also takes one port of its offer.
        command: what each copy runs (its port is ``$PORT0``); it must serve ``/health`` and ``/ready``.
        checks: health and readiness checks on each copy (off: a copy counts once it is RUNNING).
    """

    partition_aware = True
    """Its client declares PARTITION_AWARE (meseta.examples.runner and the demo read this)."""

    def __init__(
        self,
        instances: int = 2,
        resources: Resources = Resources(cpus=0.25, mem=64),  # noqa: B008 - frozen model
        command: str = SERVE,
        image: str = DEFAULT_IMAGE,
        checks: bool = True,
    ) -> None:
        super().__init__()
        self.instances = instances
        self.resources = resources
        self.container = ContainerSpec.shell(image, command)
        self.checks = checks
        self.placed: dict[str, str] = {}
        """Task id -> agent id of each live copy (UNREACHABLE ones included)."""
        self.ready: set[str] = set()
        """Copies whose readiness check has passed."""
        self.healthy: dict[str, bool] = {}
        """Each copy's last health verdict."""
        self.avoid: dict[str, float] = {}
        """Agent -> until when new copies go elsewhere (a copy was lost there, or it was lost)."""
        self.lost_agents: list[str] = []
        """Agents the master reported lost (FAILURE events), in order."""
        self.launched: list[str] = []
        """Every copy ever launched, in order."""
        self.replaced: list[tuple[str, wire.TaskState, wire.StatusReason | None]] = []
        """Copies that ended unasked: (task id, state, reason)."""
        self.suppressed = False
        """Offers are suppressed: every copy is placed, so nothing waits to launch (Marathon suppresses
        then; declining every offer each second flagged the demo's service an offer storm)."""
        self._ids = itertools.count()
        self._killing: set[str] = set()

    def filters(self) -> OfferFilters:
        """Standing filters for the client: GPU services see only GPU agents."""
        return OfferFilters(min_resources=Resources(gpus=self.resources.gpus))

    @property
    def running(self) -> int:
        """Copies that count: RUNNING, and ready where checks are on."""
        return sum(
            1
            for t in self.placed
            if self.states.get(t) == wire.TaskState.RUNNING and (not self.checks or t in self.ready)
        )

    async def offers(self, client: FrameworkClient, offers: tuple[wire.Offer, ...]) -> None:
        for offer in offers:
            wanted = self.instances - len(self.placed)
            usable = (
                wanted > 0
                and offer.agent_id not in self.placed.values()
                and self.avoid.get(offer.agent_id, 0.0) <= time.monotonic()
                and satisfies(offer, min_gpus=self.resources.gpus)
                and self.resources.fits_in(offer.resources)
                and (offer.resources.ports or not self.checks)
            )
            if not usable:
                await client.decline([offer.offer_id], refuse_seconds=DECLINE_SECONDS)
                continue
            resources = self.resources
            if self.checks:
                # A port at random, as Marathon assigns them: a copy whose port turns out taken on the
                # host (its launch fails) is not retried on that same port.
                port = random.choice([p for r in offer.resources.ports for p in range(r.begin, r.end + 1)])
                resources = resources.model_copy(update={"ports": (PortRange(begin=port, end=port),)})
            task = TaskInfo(
                task_id=f"web-{next(self._ids)}",
                name="web",
                resources=resources,
                container=self.container,
                health_check=HEALTH if self.checks else None,
                readiness_check=READINESS if self.checks else None,
            )
            self.placed[task.task_id] = offer.agent_id
            self.launched.append(task.task_id)
            self.states[task.task_id] = wire.TaskState.STAGING
            await client.accept([offer.offer_id], [task])
        if len(self.placed) >= self.instances and not self.suppressed:
            self.suppressed = True
            await client.suppress()

    async def _want_offers(self, client: FrameworkClient) -> None:
        """A copy is to be launched: offers again."""
        self.suppressed = False
        await client.revive()

    async def on_status(self, client: FrameworkClient, status: TaskStatus) -> None:
        if status.ready:
            self.ready.add(status.task_id)
        if status.healthy is not None:
            self.healthy[status.task_id] = status.healthy
        if status.state.terminal and status.task_id in self.placed:
            agent = self.placed.pop(status.task_id)
            self.ready.discard(status.task_id)
            if status.task_id not in self._killing:
                self.replaced.append((status.task_id, status.state, status.reason))
                if status.state in AGENT_FAULTS:
                    self.avoid[agent] = time.monotonic() + AVOID_SECONDS  # go elsewhere for a while
                await self._want_offers(client)
            self._killing.discard(status.task_id)
        # An UNREACHABLE copy stays placed: it may come back RUNNING (then it counts again).
        if self.running == self.instances == len(self.placed):
            self.done.set()
        else:
            self.done.clear()

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
            await self._want_offers(client)
