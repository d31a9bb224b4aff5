"""A MapReduce-like batch job: M map tasks whose input blocks live on given hosts, then R reduces.

Maps use delay scheduling: an offer from a host that holds none of the pending blocks is declined until
the job has waited ``delay`` seconds without a local launch. The job reports its data locality (share of
maps that ran on a host holding their block) and its completion time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from meseta.examples.common import TrackedScheduler
from meseta.sdk import ContainerSpec, FrameworkClient, Resources, TaskInfo, TaskStatus, wire
from meseta.sdk.helpers import DelayScheduling, first_fit

DEFAULT_IMAGE = "meseta-task:latest"
MAP = Resources(cpus=0.5, mem=32)
REDUCE = Resources(cpus=0.5, mem=64)
DECLINE_SECONDS = 0.2


@dataclass(frozen=True)
class BatchReport:
    """How the job went."""

    maps: int
    reduces: int
    local_maps: int
    seconds: float

    @property
    def locality(self) -> float:
        """Share of maps that ran where their block is."""
        return self.local_maps / self.maps if self.maps else 1.0


class BatchJob(TrackedScheduler):
    """The job. Block ``i`` lives on ``hosts[i % len(hosts)]``.

    Args:
        hosts: hostnames of the agents that hold the input blocks.
        maps: map tasks (one per block). reduces: reduce tasks, started once every map finished.
        delay: delay scheduling's wait, seconds (0: take any offer).
        task_seconds: how long each task runs.
    """

    def __init__(
        self,
        hosts: Sequence[str],
        maps: int = 24,
        reduces: int = 6,
        delay: float = 3.0,
        task_seconds: float = 0.5,
        image: str = DEFAULT_IMAGE,
    ) -> None:
        super().__init__()
        self.block_host = {f"map-{i}": hosts[i % len(hosts)] for i in range(maps)}
        self.pending_maps = [self._task(tid, MAP, task_seconds, image) for tid in self.block_host]
        self.pending_reduces = [
            self._task(f"reduce-{i}", REDUCE, task_seconds, image) for i in range(reduces)
        ]
        self.reduces = reduces
        self.locality = DelayScheduling(
            delay, {tid: frozenset({host}) for tid, host in self.block_host.items()}
        )
        self.ran_on: dict[str, str] = {}
        self.started = time.monotonic()
        self.finished_at: float | None = None
        for task in self.pending_maps + self.pending_reduces:
            self.states[task.task_id] = wire.TaskState.STAGING
        self._retry: dict[str, TaskInfo] = {t.task_id: t for t in self.pending_maps + self.pending_reduces}

    @staticmethod
    def _task(task_id: str, resources: Resources, seconds: float, image: str) -> TaskInfo:
        return TaskInfo(
            task_id=task_id,
            name=task_id,
            resources=resources,
            container=ContainerSpec.shell(image, f"echo {task_id} on $HOSTNAME; sleep {seconds}"),
        )

    @property
    def maps_done(self) -> bool:
        return all(self.states[t] == wire.TaskState.FINISHED for t in self.block_host)

    async def offers(self, client: FrameworkClient, offers: tuple[wire.Offer, ...]) -> None:
        for offer in offers:
            if self.pending_maps:
                chosen = self.locality.choose(offer, self.pending_maps)
                self.pending_maps = [t for t in self.pending_maps if t not in chosen]
            elif self.maps_done and self.pending_reduces:
                chosen = first_fit(offer, self.pending_reduces)
                self.pending_reduces = [t for t in self.pending_reduces if t not in chosen]
            else:
                chosen = []
            if not chosen:
                await client.decline([offer.offer_id], refuse_seconds=DECLINE_SECONDS)
                continue
            for task in chosen:
                self.ran_on[task.task_id] = offer.hostname
            await client.accept([offer.offer_id], chosen)

    async def on_status(self, client: FrameworkClient, status: TaskStatus) -> None:
        if not status.state.terminal:
            return
        if status.state != wire.TaskState.FINISHED:
            # Lost or failed: run it again (a map goes back under delay scheduling).
            task = self._retry[status.task_id]
            (self.pending_maps if task.task_id in self.block_host else self.pending_reduces).append(task)
            return
        if all(s == wire.TaskState.FINISHED for s in self.states.values()):
            self.finished_at = time.monotonic()
            self.done.set()
            await client.suppress()

    def report(self) -> BatchReport:
        """Locality and completion time so far."""
        local = sum(1 for t, host in self.block_host.items() if self.ran_on.get(t) == host)
        end = self.finished_at or time.monotonic()
        return BatchReport(len(self.block_host), self.reduces, local, end - self.started)
