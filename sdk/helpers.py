"""Offer helpers every framework needs: packing, hard constraints, delay scheduling, gangs.

All are plain objects with no I/O: they decide, the :class:`~meseta.sdk.client.FrameworkClient` acts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from meseta.sdk.wire import AttributeConstraint, Offer, Resources, TaskInfo


def first_fit(
    offer: Offer, pending: Iterable[TaskInfo], resources: Resources | None = None
) -> list[TaskInfo]:
    """The pending tasks, in order, that fit together into the offer (or into ``resources``)."""
    left: Resources = offer.resources if resources is None else resources
    chosen: list[TaskInfo] = []
    for task in pending:
        if task.resources.fits_in(left):
            chosen.append(task)
            left = left - task.resources
    return chosen


def satisfies(offer: Offer, constraints: Sequence[AttributeConstraint] = (), min_gpus: int = 0) -> bool:
    """Hard constraints: every attribute predicate holds on the offer's agent, and it has the GPUs."""
    attributes = {**offer.attributes, "hostname": offer.hostname}
    return offer.resources.gpus >= min_gpus and all(c.holds(attributes) for c in constraints)


@dataclass
class DelayScheduling:
    """Delay scheduling (Zaharia et al.; the Mesos paper's policy for soft locality constraints).

    A job prefers, for each task, the hosts that hold its data. Offers from other hosts are declined until
    the job has gone ``wait`` seconds without launching a local task; then any host will do, and the
    clock restarts at the next local launch.

    Args:
        wait: the longest a job waits for locality, in seconds; 0 disables locality altogether.
        preferred: task id -> the hostnames it prefers (tasks absent here have no preference).
    """

    wait: float
    preferred: dict[str, frozenset[str]] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    _last_local: float | None = None

    def is_local(self, task: TaskInfo, hostname: str) -> bool:
        """Whether the task prefers this host (or prefers none)."""
        hosts = self.preferred.get(task.task_id)
        return not hosts or hostname in hosts

    def choose(self, offer: Offer, pending: Sequence[TaskInfo]) -> list[TaskInfo]:
        """The tasks to launch on this offer: local ones first; others only once the wait is over.

        With ``wait`` 0 there is no locality preference at all: pending tasks in order (FIFO), the
        baseline delay scheduling is measured against.
        """
        if self.wait <= 0:
            return first_fit(offer, pending)
        now = self.clock()
        if self._last_local is None:
            self._last_local = now
        local = [t for t in pending if self.is_local(t, offer.hostname)]
        chosen = first_fit(offer, local)
        if chosen:
            self._last_local = now
        if now - self._last_local >= self.wait:
            rest = [t for t in pending if t not in chosen]
            left = offer.resources - _sum(chosen)
            chosen += first_fit(offer, rest, left)
        return chosen


def _sum(tasks: Iterable[TaskInfo]) -> Resources:
    acc = Resources()
    for task in tasks:
        acc = acc + task.resources
    return acc


@dataclass
class Gang:
    """Gather offers until ``size`` slots of ``slot`` resources are held, then launch all at once.

    A rigid job (MPI) is useless partially launched. Offers are held, not accepted, while the gang forms;
    if it has not formed ``timeout`` seconds after the first held offer, :meth:`expired` says so and the
    caller declines everything it holds, so resources are not hoarded.
    """

    size: int
    slot: Resources
    timeout: float
    clock: Callable[[], float] = time.monotonic
    held: dict[str, Offer] = field(default_factory=dict)
    _since: float | None = None

    def slots_in(self, offer: Offer) -> int:
        """How many slots fit in one offer."""
        count, left = 0, offer.resources
        while self.slot.fits_in(left):
            left = left - self.slot
            count += 1
        return count

    @property
    def slots_held(self) -> int:
        """Slots in the offers held now."""
        return sum(self.slots_in(o) for o in self.held.values())

    def hold(self, offer: Offer) -> bool:
        """Keep an offer that has at least one slot; False when it is of no use (decline it)."""
        if self.slots_in(offer) == 0:
            return False
        if self._since is None:
            self._since = self.clock()
        self.held[offer.offer_id] = offer
        return True

    def forget(self, offer_id: str) -> None:
        """An offer was rescinded."""
        self.held.pop(offer_id, None)
        if not self.held:
            self._since = None

    @property
    def ready(self) -> bool:
        """Enough slots are held to launch the whole gang."""
        return self.slots_held >= self.size

    def expired(self) -> bool:
        """The gang has been forming for longer than ``timeout``."""
        return self._since is not None and self.clock() - self._since >= self.timeout

    def release(self) -> list[str]:
        """Give up what is held: the offer ids to decline."""
        ids = list(self.held)
        self.held.clear()
        self._since = None
        return ids

    def plan(self, make_task: Callable[[int], TaskInfo]) -> list[tuple[list[str], list[TaskInfo]]]:
        """Assign ``size`` tasks to the held offers: per agent, (offer ids, tasks). Empties the hold.

        Offers that end up with no task are returned with an empty task list, to be declined.
        """
        by_agent: dict[str, list[Offer]] = {}
        for offer in self.held.values():
            by_agent.setdefault(offer.agent_id, []).append(offer)
        plan: list[tuple[list[str], list[TaskInfo]]] = []
        index = 0
        for offers in by_agent.values():
            room = sum(self.slots_in(o) for o in offers)
            take = min(room, self.size - index)
            plan.append(([o.offer_id for o in offers], [make_task(index + i) for i in range(take)]))
            index += take
        self.held.clear()
        self._since = None
        return plan
