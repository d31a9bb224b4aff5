"""The master's soft state: agents, frameworks, tasks and outstanding offers.

Agents' accounting keeps ``used + offered <= total``; an allocation that would break it is stale.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

from meseta.master.events import EventHub
from meseta.sdk import wire
from meseta.sdk.wire import Resources, TaskState

TaskKey = tuple[str, str]
"""(framework id, task id): task ids are unique per framework, as in Mesos."""


@dataclass
class AgentInfo:
    """A registered agent."""

    agent_id: str
    hostname: str
    attributes: dict[str, str]
    total: Resources
    last_seen: float
    """When it was last heard from (wall clock, for people)."""
    used: Resources = field(default_factory=Resources)
    offered: Resources = field(default_factory=Resources)
    tasks: set[TaskKey] = field(default_factory=set)
    gpu_ids: tuple[str, ...] = ()
    gpu_owner: dict[str, str] = field(default_factory=dict)
    """GPU id -> the offer id or task key string holding it; absent ids are free."""
    heard: float = field(default_factory=time.monotonic)
    """When it was last heard from on the monotonic clock, which liveness is judged by: a wall clock
    stepped forward (NTP) would make every agent look silent at once."""
    launches_sent: int = 0
    """Launches sent to it in this master's term: the sequence of its launch marks."""
    marked_at: float = 0.0
    """When it was last sent a MARK_LAUNCHES (monotonic; 0: never)."""

    def free_gpus(self, count: int) -> tuple[str, ...]:
        """The first ``count`` GPU ids neither offered nor used."""
        return tuple(g for g in self.gpu_ids if g not in self.gpu_owner)[:count]

    def as_event(self, unavailable: bool = False) -> wire.AgentAdded:
        """The allocator's AGENT_ADDED for this agent: what is neither used nor offered is available
        (to nobody, where it is ``unavailable``: drained)."""
        return wire.AgentAdded(
            agent_id=self.agent_id,
            hostname=self.hostname,
            attributes=self.attributes,
            total=self.total,
            available=self.free,
            unavailable=unavailable,
        )

    def release_gpus(self, owner: str) -> None:
        """Free every GPU id ``owner`` held."""
        self.gpu_owner = {g: o for g, o in self.gpu_owner.items() if o != owner}

    @property
    def free(self) -> Resources:
        """Neither used by a task nor offered."""
        return self.total - self.used - self.offered


def hash_secret(secret: str) -> str:
    """What etcd keeps of a framework's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class FrameworkStats:
    """Counters of one framework's offer cycles."""

    offers_sent: int = 0
    offers_accepted: int = 0
    offers_declined: int = 0
    offers_rescinded: int = 0
    tasks_launched: int = 0
    errors: int = 0


@dataclass
class FrameworkInfo:
    """A subscribed framework."""

    framework_id: str
    name: str
    role: str
    weight: float
    priority: int = 0
    filters: wire.OfferFilters = field(default_factory=wire.OfferFilters)
    suppressed: bool = False
    subscribed_at: float = 0.0
    secret_hash: str = ""
    failover_timeout: float = wire.DEFAULT_FAILOVER_TIMEOUT
    principal: str | None = None
    """The framework principal that subscribed it (None in development mode): only it may call for it."""
    partition_aware: bool = False
    """Declared PARTITION_AWARE: its tasks on a silent agent are UNREACHABLE (then RUNNING or GONE)."""
    last_seen: float = field(default_factory=time.time)
    disconnected_at: float | None = None
    """When its heartbeats stopped; it keeps its tasks for ``failover_timeout`` after that."""
    last_accept_at: float | None = None
    tasks: set[TaskKey] = field(default_factory=set)
    offers: set[str] = field(default_factory=set)
    stats: FrameworkStats = field(default_factory=FrameworkStats)

    def registry_entry(self) -> dict[str, object]:
        """What etcd keeps of the framework (the durable part)."""
        return {
            "name": self.name,
            "role": self.role,
            "weight": self.weight,
            "priority": self.priority,
            "filters": self.filters.model_dump(mode="json"),
            "suppressed": self.suppressed,
            "subscribed_at": self.subscribed_at,
            "secret_hash": self.secret_hash,
            "failover_timeout": self.failover_timeout,
            "principal": self.principal,
            "partition_aware": self.partition_aware,
        }

    @classmethod
    def from_registry(cls, framework_id: str, entry: dict[str, object]) -> FrameworkInfo:
        """Rebuild from what :meth:`registry_entry` stored."""
        return cls(
            framework_id,
            str(entry["name"]),
            str(entry.get("role", "*")),
            float(entry.get("weight", 1.0)),  # type: ignore[arg-type]
            priority=int(entry.get("priority", 0)),  # type: ignore[call-overload]
            filters=wire.OfferFilters.model_validate(entry.get("filters", {})),
            suppressed=bool(entry.get("suppressed", False)),
            subscribed_at=float(entry.get("subscribed_at", 0.0)),  # type: ignore[arg-type]
            secret_hash=str(entry.get("secret_hash", "")),
            failover_timeout=float(entry.get("failover_timeout", wire.DEFAULT_FAILOVER_TIMEOUT)),  # type: ignore[arg-type]
            principal=None if entry.get("principal") is None else str(entry["principal"]),
            partition_aware=bool(entry.get("partition_aware", False)),
        )

    def holds_secret(self, secret: str | None) -> bool:
        """Whether ``secret`` is this framework's (compared in constant time)."""
        return secret is not None and hmac.compare_digest(hash_secret(secret), self.secret_hash)

    def as_event(self) -> wire.FrameworkAdded:
        """The allocator's FRAMEWORK_ADDED for this framework."""
        return wire.FrameworkAdded(
            framework_id=self.framework_id,
            role=self.role,
            weight=self.weight,
            priority=self.priority,
            filters=self.filters,
            suppressed=self.suppressed,
        )


@dataclass(frozen=True)
class ScheduledRevocation:
    """Tasks to kill with reason REVOKED once their grace period ends."""

    deadline: float
    framework_id: str
    task_ids: tuple[str, ...]


@dataclass
class TaskEntry:
    """A task the master launched and has not seen end."""

    framework_id: str
    task_id: str
    agent_id: str
    resources: Resources
    state: TaskState = TaskState.STAGING
    gpu_ids: tuple[str, ...] = ()
    launched: float = field(default_factory=time.monotonic)
    """When the master sent its launch (monotonic): one still STAGING long after, that its agent does not
    list once it has read that far, never arrived."""
    sequence: int = 0
    """Its launch's mark in its agent's queue (this master's term; 0: not launched by this master)."""
    healthy: bool | None = None
    """Its health check's last verdict, as its agent reported it (None: no check, or no verdict yet)."""
    ready: bool | None = None

    @property
    def owner(self) -> str:
        """How the task is named as a GPU holder."""
        return f"task:{self.framework_id}/{self.task_id}"


@dataclass(frozen=True)
class Drain:
    """An agent taken out of service."""

    since: float
    """When the drain started (wall clock)."""
    deadline: float
    """When its remaining tasks are killed (wall clock)."""
    window: str | None = None
    """The maintenance window that drains it (None: an operator's drain)."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Window:
    """Agents in maintenance from ``start`` to ``end`` (wall clock)."""

    window_id: str
    agent_ids: tuple[str, ...]
    start: float
    end: float
    drain_seconds: float = 0.0
    """Seconds after the start at which the agents' remaining tasks are killed."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Window:
        return cls(
            window_id=str(data["window_id"]),
            agent_ids=tuple(data["agent_ids"]),
            start=float(data["start"]),
            end=float(data["end"]),
            drain_seconds=float(data.get("drain_seconds", 0.0)),
        )


@dataclass
class Cluster:
    """All soft state of the master."""

    agents: dict[str, AgentInfo] = field(default_factory=dict)
    frameworks: dict[str, FrameworkInfo] = field(default_factory=dict)
    tasks: dict[TaskKey, TaskEntry] = field(default_factory=dict)
    offers: dict[str, wire.Offer] = field(default_factory=dict)
    revocations: list[ScheduledRevocation] = field(default_factory=list)
    lost_agents: set[str] = field(default_factory=set)
    unreachable: dict[str, float] = field(default_factory=dict)
    """Lost agents with tasks of partition-aware frameworks that may still come back: agent id -> when
    (wall clock) it was lost. Their tasks wait in ``unreachable_tasks`` until ``unreachable_timeout``."""
    unreachable_tasks: dict[TaskKey, TaskEntry] = field(default_factory=dict)
    """Tasks UNREACHABLE on a lost agent: RUNNING again if it returns in time, GONE otherwise."""
    """Agents removed for silence: their frameworks were told their tasks are LOST."""
    gone_agents: set[str] = field(default_factory=set)
    """Agents an operator marked gone: never registered again."""
    drains: dict[str, Drain] = field(default_factory=dict)
    """Agent id -> its drain (meseta.master.draining); kept for agents not registered (yet) too."""
    maintenance: dict[str, Window] = field(default_factory=dict)
    """Window id -> a scheduled maintenance window."""
    events: EventHub = field(default_factory=EventHub)
    """The operators' event stream (meseta.master.events)."""
    finished: OrderedDict[TaskKey, str] = field(default_factory=OrderedDict)
    """Recently ended tasks -> their agent, so their logs can still be found."""
    finished_limit: int = 10_000
    total: Resources = field(default_factory=Resources)
    """Every agent's resources together, kept as agents come and go (shares are read every second; at
    10,000 agents, summing them each time held the event loop)."""

    def add_agent(self, agent: AgentInfo) -> None:
        """Hold a newly registered agent."""
        self._forget_agent(agent.agent_id)
        self.agents[agent.agent_id] = agent
        self.total = self.total + agent.total
        self.events.emit("AGENT_ADDED", agent_id=agent.agent_id, hostname=agent.hostname)

    def remove_agent(self, agent_id: str) -> AgentInfo | None:
        """Forget an agent (its tasks are the caller's business)."""
        agent = self._forget_agent(agent_id)
        if agent is not None:
            self.events.emit("AGENT_REMOVED", agent_id=agent_id, hostname=agent.hostname)
        return agent

    def _forget_agent(self, agent_id: str) -> AgentInfo | None:
        agent = self.agents.pop(agent_id, None)
        if agent is not None:
            self.total = self.total - agent.total
        return agent

    def held(self) -> list[wire.Held]:
        """What each framework holds on each agent (tasks and offers): the allocator's view to rebuild."""
        acc: dict[tuple[str, str], Resources] = {}
        for task in self.tasks.values():
            if task.framework_id in self.frameworks:
                key = (task.framework_id, task.agent_id)
                acc[key] = acc.get(key, Resources()) + task.resources
        for offer in self.offers.values():
            key = (offer.framework_id, offer.agent_id)
            acc[key] = acc.get(key, Resources()) + offer.resources
        return [wire.Held(framework_id=f, agent_id=a, resources=r) for (f, a), r in acc.items()]

    def state_sync(self) -> list[wire.StateSync]:
        """The whole view, for a (re)started allocator: one message, or the parts of one where it would
        not fit in one (thousands of agents; :func:`meseta.sdk.wire.state_sync_parts`)."""
        return wire.state_sync_parts(
            [a.as_event(a.agent_id in self.drains) for a in self.agents.values()],
            [fw.as_event() for fw in self.frameworks.values()],
            list(self.held()),
        )

    def add_offer(self, offer: wire.Offer) -> None:
        """Record an outstanding offer and reserve its resources on the agent."""
        self.offers[offer.offer_id] = offer
        agent = self.agents[offer.agent_id]
        agent.offered += offer.resources
        agent.gpu_owner.update({g: f"offer:{offer.offer_id}" for g in offer.gpu_ids})
        self.frameworks[offer.framework_id].offers.add(offer.offer_id)

    def remove_offer(self, offer_id: str) -> wire.Offer | None:
        """Forget an outstanding offer and release its reservation."""
        offer = self.offers.pop(offer_id, None)
        if offer is None:
            return None
        if (agent := self.agents.get(offer.agent_id)) is not None:
            agent.offered -= offer.resources
            agent.release_gpus(f"offer:{offer.offer_id}")
        if (fw := self.frameworks.get(offer.framework_id)) is not None:
            fw.offers.discard(offer_id)
        return offer

    def add_task(self, task: TaskEntry) -> None:
        """Record a task being launched and charge its resources to the agent."""
        key = (task.framework_id, task.task_id)
        self.tasks[key] = task
        agent = self.agents[task.agent_id]
        agent.used += task.resources
        agent.tasks.add(key)
        agent.gpu_owner.update({g: task.owner for g in task.gpu_ids})
        if (fw := self.frameworks.get(task.framework_id)) is not None:
            fw.tasks.add(key)

    def end_task(self, key: TaskKey) -> TaskEntry | None:
        """Forget a task that reached a terminal state; its resources are free again."""
        task = self.tasks.pop(key, None)
        if task is None:
            return None
        if (agent := self.agents.get(task.agent_id)) is not None:
            agent.used -= task.resources
            agent.tasks.discard(key)
            agent.release_gpus(task.owner)
        self.finished[key] = task.agent_id
        if len(self.finished) > self.finished_limit:
            self.finished.popitem(last=False)
        if (fw := self.frameworks.get(task.framework_id)) is not None:
            fw.tasks.discard(key)
        return task

    def expired_offers(self, now: float) -> list[wire.Offer]:
        """Outstanding offers past their expiry."""
        return [o for o in self.offers.values() if o.expires_at <= now]
