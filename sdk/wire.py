"""Meseta's wire contract: every message, exchange, queue and routing key, in one place.

Both sides import this module and nothing else spells an exchange name. Every message is a frozen pydantic
model with a ``type`` discriminator and a protocol ``version``; :func:`decode` checks the version and the
type before validating, so a sender learns exactly why its message was refused.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal, Self, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

PROTOCOL_VERSION: Final = 2
"""2: one message per concept, in its batch form (a batch of one is a batch). Other versions are refused
with the reason (``wrong version``), dead-lettered, and answered where the sender can be told."""
MAX_MESSAGE_BYTES: Final = 1 << 20
"""Larger bodies are dead-lettered unread: no legitimate message comes close."""

DEFAULT_FAILOVER_TIMEOUT: Final = 60.0
DEFAULT_REFUSE_SECONDS: Final = 5.0
"""Mesos's default filter: a declined agent is not re-offered to the same framework for this long."""

ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""Ids end up in routing keys and container names, so they are kept to a safe alphabet."""

_ID_RE = re.compile(ID_PATTERN)
_SCALAR_DECIMALS = 3  # Mesos's fixed-point precision: keeps 0.1 + 0.2 - 0.3 from leaving residue.
_SCALE = 10**_SCALAR_DECIMALS

Id = Annotated[str, Field(pattern=ID_PATTERN)]


def unique_hex() -> str:
    """128 random bits as hex: ids for dedupe, not secrets. ``uuid4`` reads the kernel's entropy on every
    call, a measurable cost at thousands of messages a second; the (fork-safe) Mersenne Twister does not."""
    return f"{random.getrandbits(128):032x}"


def new_id(prefix: str) -> str:
    """A fresh id such as ``offer-3f2a...`` that satisfies :data:`ID_PATTERN`."""
    return f"{prefix}-{unique_hex()[:16]}"


# --- Topology ---------------------------------------------------------------------------------------------


class Exchange(StrEnum):
    """The exchanges; all are direct exchanges."""

    HEARTBEATS = "meseta.heartbeats"  # agent -> master
    OFFERS = "meseta.offers"  # master -> framework, routing key = framework id
    LAUNCHES = "meseta.launches"  # master -> agent, routing key = agent id
    STATUS = "meseta.status"  # agent -> master
    CALLS = "meseta.calls"  # framework -> master
    ALLOCATION = "meseta.allocation"  # master <-> allocator
    DEAD_LETTER = "meseta.dead-letter"  # anything refused, with the reason in a header


class RoutingKey(StrEnum):
    """Fixed routing keys; per-framework and per-agent keys are the ids themselves."""

    HEARTBEAT = "heartbeat"
    STATUS = "status"
    CALL = "call"
    TO_ALLOCATOR = "to-allocator"
    TO_MASTER = "to-master"
    DEAD_LETTER = "dead-letter"
    ALL_AGENTS = "all-agents"
    """Every agent's queue is bound with it too: the master's broadcasts (REREGISTER after a failover)."""


class Queue(StrEnum):
    """Named queues of the services."""

    MASTER_HEARTBEATS = "meseta.master.heartbeats"
    MASTER_STATUS = "meseta.master.status"
    MASTER_CALLS = "meseta.master.calls"
    MASTER_ALLOCATIONS = "meseta.master.allocations"
    ALLOCATOR_EVENTS = "meseta.allocator.events"
    DEAD_LETTER = "meseta.dead-letter"


def executor_task_id(executor_id: str, agent_id: str) -> str:
    """The task id under which an executor's own container is accounted and reported."""
    return f"executor.{executor_id}.{agent_id}"[:128]


def executor_key(agent_id: str, framework_id: str, executor_id: str) -> str:
    """Routing key (and queue name suffix) of one executor on one agent."""
    return f"executor.{agent_id}.{framework_id}.{executor_id}"


def agent_queue(agent_id: str) -> str:
    """The queue an agent consumes LAUNCH/KILL from."""
    return f"meseta.agent.{agent_id}"


def framework_queue(framework_id: str) -> str:
    """The queue a framework consumes its events from."""
    return f"meseta.framework.{framework_id}"


HEADER_REASON: Final = "x-meseta-reason"
HEADER_ORIGIN: Final = "x-meseta-origin"
HEADER_EPOCH: Final = "x-meseta-epoch"


# --- Resources --------------------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PortRange(_Frozen):
    """An inclusive range of host ports."""

    begin: int = Field(ge=1, le=65535)
    end: int = Field(ge=1, le=65535)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.begin > self.end:
            raise ValueError(f"port range begins after it ends: {self.begin}-{self.end}")
        return self

    def __len__(self) -> int:
        return self.end - self.begin + 1


def _merge(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    merged: list[list[int]] = []
    for r in sorted(ranges, key=lambda r: r.begin):
        if merged and r.begin <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], r.end)
        else:
            merged.append([r.begin, r.end])
    return tuple(PortRange(begin=b, end=e) for b, e in merged)


def _subtract(ranges: tuple[PortRange, ...], take: tuple[PortRange, ...]) -> tuple[PortRange, ...]:
    left = list(_merge(ranges))
    for t in _merge(take):
        out: list[PortRange] = []
        for r in left:
            if t.end < r.begin or t.begin > r.end:
                out.append(r)
                continue
            if r.begin < t.begin:
                out.append(PortRange(begin=r.begin, end=t.begin - 1))
            if t.end < r.end:
                out.append(PortRange(begin=t.end + 1, end=r.end))
        left = out
    return tuple(left)


def _ports_within(inner: tuple[PortRange, ...], outer: tuple[PortRange, ...]) -> bool:
    return not _subtract(inner, outer)


class Resources(_Frozen):
    """A resource vector on one agent: scalars plus host port ranges.

    ``mem`` and ``disk`` are in MiB. Arithmetic rounds scalars to three decimals, as Mesos does.
    """

    cpus: float = Field(default=0.0, ge=0)
    mem: float = Field(default=0.0, ge=0)
    disk: float = Field(default=0.0, ge=0)
    gpus: int = Field(default=0, ge=0)
    ports: tuple[PortRange, ...] = ()

    SCALARS: ClassVar[tuple[str, ...]] = ("cpus", "mem", "disk", "gpus")

    @field_validator("ports")
    @classmethod
    def _normalise_ports(cls, v: tuple[PortRange, ...]) -> tuple[PortRange, ...]:
        return _merge(v)

    def scalars(self) -> dict[str, float]:
        """The scalar resources by name."""
        return {name: float(getattr(self, name)) for name in self.SCALARS}

    def _combine(self, other: Resources, sign: int) -> Resources:
        # round(x * 1000) / 1000, not round(x, 3): the same fixed point, at a quarter of the cost.
        cpus = round((self.cpus + sign * other.cpus) * _SCALE) / _SCALE
        mem = round((self.mem + sign * other.mem) * _SCALE) / _SCALE
        disk = round((self.disk + sign * other.disk) * _SCALE) / _SCALE
        gpus = self.gpus + sign * other.gpus
        if cpus < 0 or mem < 0 or disk < 0 or gpus < 0:
            raise ValueError(f"resources would go negative: {self} - {other}")
        values: dict[str, Any] = {"cpus": cpus, "mem": mem, "disk": disk, "gpus": gpus}
        if not self.ports and not other.ports:
            # Hot path (allocator and master bookkeeping): the values were checked above, so the
            # model's validation would only cost time.
            return Resources.model_construct(**values, ports=())
        ports = _merge(self.ports + other.ports) if sign > 0 else _subtract(self.ports, other.ports)
        return Resources(**values, ports=ports)

    def __add__(self, other: Resources) -> Resources:
        return self._combine(other, +1)

    def __sub__(self, other: Resources) -> Resources:
        """Subtract ``other``, which must fit in ``self``."""
        return self._combine(other, -1)

    def fits_in(self, other: Resources) -> bool:
        """Whether every part of ``self`` is contained in ``other``."""
        scalars_fit = all(
            getattr(self, n) <= getattr(other, n) + 10**-_SCALAR_DECIMALS / 2 for n in self.SCALARS
        )
        return scalars_fit and _ports_within(self.ports, other.ports)

    def shortfall(self, held: Resources) -> Resources:
        """Per scalar, how much ``held`` lacks of ``self`` (never negative; ports are not counted)."""
        h = held.scalars()
        gaps = {n: max(0.0, round(v - h[n], _SCALAR_DECIMALS)) for n, v in self.scalars().items()}
        return Resources(cpus=gaps["cpus"], mem=gaps["mem"], disk=gaps["disk"], gpus=int(gaps["gpus"]))

    def clamp(self, limit: Resources) -> Resources:
        """Per scalar, the smaller of ``self`` and ``limit`` (ports are not counted)."""
        lim = limit.scalars()
        low = {n: min(v, lim[n]) for n, v in self.scalars().items()}
        return Resources(cpus=low["cpus"], mem=low["mem"], disk=low["disk"], gpus=int(low["gpus"]))

    def is_empty(self) -> bool:
        """No scalar and no port."""
        return not self.ports and all(v == 0 for v in self.scalars().values())

    def port_count(self) -> int:
        """How many ports the ranges hold."""
        return sum(len(r) for r in self.ports)


def total(resources: Iterable[Resources]) -> Resources:
    """The sum of several resource vectors."""
    acc = Resources()
    for r in resources:
        acc = acc + r
    return acc


# --- Tasks ------------------------------------------------------------------------------------------------


class TaskState(StrEnum):
    """Task states, as in Mesos."""

    STAGING = "STAGING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    KILLING = "KILLING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    LOST = "LOST"
    ERROR = "ERROR"

    @property
    def terminal(self) -> bool:
        """A task in a terminal state holds no resources and changes no more."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {TaskState.FINISHED, TaskState.FAILED, TaskState.KILLED, TaskState.LOST, TaskState.ERROR}
)


class StatusReason(StrEnum):
    """Why a task changed state."""

    CONTAINER_EXITED = "CONTAINER_EXITED"
    CONTAINER_LAUNCH_FAILED = "CONTAINER_LAUNCH_FAILED"
    KILLED_BY_FRAMEWORK = "KILLED_BY_FRAMEWORK"
    KILLED_BY_OPERATOR = "KILLED_BY_OPERATOR"
    INVALID_TASK = "INVALID_TASK"
    UNKNOWN_TASK = "UNKNOWN_TASK"
    AGENT_REMOVED = "AGENT_REMOVED"
    FRAMEWORK_REMOVED = "FRAMEWORK_REMOVED"
    REVOKED = "REVOKED"
    RECONCILIATION = "RECONCILIATION"
    OOM_KILLED = "OOM_KILLED"
    EXECUTOR_TERMINATED = "EXECUTOR_TERMINATED"
    INVALID_OFFERS = "INVALID_OFFERS"
    """Its ACCEPT was refused for its offers (expired, used, another's): this master did not launch it.
    After a failover the deposed master may have (the accept then came again): reconcile to be sure."""


class Mount(_Frozen):
    """A host path bind-mounted into the container (Mesos's host-path volume)."""

    host_path: str = Field(pattern=r"^/")
    container_path: str = Field(pattern=r"^/")
    read_only: bool = True


class ContainerSpec(_Frozen):
    """What to run: a Docker image, its command and arguments, environment and working directory.

    ``command`` replaces the image's command; ``arguments`` are appended to it (Mesos's CommandInfo).
    """

    image: str = Field(min_length=1, max_length=256)
    command: tuple[str, ...] = ()
    arguments: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = Field(default=None, max_length=1024)
    mounts: tuple[Mount, ...] = ()

    def argv(self) -> tuple[str, ...]:
        """The full command line."""
        return self.command + self.arguments

    @classmethod
    def shell(cls, image: str, script: str, env: dict[str, str] | None = None) -> ContainerSpec:
        """A container that runs ``script`` with ``sh -c``."""
        return cls(image=image, command=("sh", "-c", script), env=env or {})


class ExecutorInfo(_Frozen):
    """A framework's own executor: started once per framework on an agent, it runs the framework's tasks.

    The container runs with host networking and ``MESETA_*`` variables that let
    :class:`meseta.sdk.executor.Executor` connect back to the agent.
    """

    executor_id: Id
    container: ContainerSpec
    resources: Resources = Field(default_factory=lambda: Resources(cpus=0.1, mem=64))


class TaskInfo(_Frozen):
    """A task a framework asks to launch on one agent.

    With ``executor`` unset it is a command task: one container of its own. ``kill_grace_seconds`` is the
    time between SIGTERM and SIGKILL when it is killed (the agent's default when unset).
    """

    task_id: Id
    name: str = Field(default="", max_length=256)
    resources: Resources
    container: ContainerSpec
    kill_grace_seconds: float | None = Field(default=None, ge=0, le=600)
    executor: ExecutorInfo | None = None

    @field_validator("resources")
    @classmethod
    def _needs_cpu_and_mem(cls, v: Resources) -> Resources:
        if v.cpus <= 0 or v.mem <= 0:
            raise ValueError("a task needs cpus > 0 and mem > 0")
        return v


class TaskStatus(_Frozen):
    """One state change of a task, as the agent saw it."""

    task_id: Id
    state: TaskState
    agent_id: Id | None = None
    reason: StatusReason | None = None
    message: str = ""
    exit_code: int | None = None
    uuid: str = Field(default_factory=lambda: unique_hex())
    timestamp: float = Field(default_factory=time.time)


class Offer(_Frozen):
    """Resources on one agent, offered to one framework until ``expires_at``."""

    offer_id: Id
    framework_id: Id
    agent_id: Id
    hostname: str
    resources: Resources
    attributes: dict[str, str] = Field(default_factory=dict)
    gpu_ids: tuple[str, ...] = ()
    """The device ids of the offered GPUs."""
    allocated_at: float
    expires_at: float
    trace: dict[str, str] = Field(default_factory=dict, max_length=4)
    """The W3C trace context of this offer's cycle (offers of several cycles travel in one OFFERS)."""


class AttributeConstraint(_Frozen):
    """A predicate on an agent attribute: ``rack in {r1, r2}``, ``zone != east``, ``ssd exists``."""

    attribute: str = Field(min_length=1, max_length=64)
    op: Literal["eq", "ne", "in", "not_in", "exists", "absent"]
    values: tuple[str, ...] = ()

    def holds(self, attributes: dict[str, str]) -> bool:
        """Whether an agent with these attributes satisfies the constraint."""
        value = attributes.get(self.attribute)
        match self.op:
            case "exists":
                return value is not None
            case "absent":
                return value is None
            case "eq" | "in":
                return value in self.values
            case "ne" | "not_in":
                return value not in self.values
        return False  # pragma: no cover - Literal is exhaustive


class OfferFilters(_Frozen):
    """A framework's standing filters: the master and allocator only offer what passes.

    ``min_resources`` is also the framework's minimum offer size (``gpus=1`` means "GPU agents only").
    """

    min_resources: Resources = Field(default_factory=Resources)
    attributes: tuple[AttributeConstraint, ...] = ()
    hostnames_allow: tuple[str, ...] = ()
    """When not empty, only these hosts."""
    hostnames_deny: tuple[str, ...] = ()

    def admits(self, hostname: str, attributes: dict[str, str], available: Resources) -> bool:
        """Whether a slice of an agent passes every filter."""
        if self.hostnames_allow and hostname not in self.hostnames_allow:
            return False
        if hostname in self.hostnames_deny:
            return False
        if not all(c.holds(attributes) for c in self.attributes):
            return False
        # Ports are not a size: a minimum is about scalars only.
        return self.min_resources.model_copy(update={"ports": ()}).fits_in(available)


class RunningTask(_Frozen):
    """A task an agent runs, as it reports it on (re)registration."""

    framework_id: Id
    task_id: Id
    resources: Resources
    gpu_ids: tuple[str, ...] = ()


# --- Messages ---------------------------------------------------------------------------------------------


class Message(_Frozen):
    """The envelope every message shares."""

    type: str
    version: int = PROTOCOL_VERSION
    message_id: str = Field(default_factory=lambda: unique_hex(), min_length=1, max_length=64)
    correlation_id: str | None = Field(default=None, max_length=64)


# agent -> master, on HEARTBEATS


class RegisterAgent(Message):
    """An agent announces itself with its total resources and attributes."""

    type: Literal["REGISTER_AGENT"] = "REGISTER_AGENT"
    agent_id: Id
    hostname: str = Field(min_length=1, max_length=253)
    attributes: dict[str, str] = Field(default_factory=dict)
    resources: Resources
    gpu_ids: tuple[str, ...] = ()
    """Device ids of the agent's GPUs (as many as ``resources.gpus``)."""
    running_tasks: tuple[RunningTask, ...] = ()
    heartbeat_interval: float = Field(default=0.0, ge=0, le=3600)
    """Seconds between this agent's heartbeats (its own, or longer as a master told it; 0: unknown)."""


class Heartbeat(Message):
    """An agent is alive; ``free`` is what its running tasks leave."""

    type: Literal["HEARTBEAT"] = "HEARTBEAT"
    agent_id: Id
    free: Resources
    running_tasks: tuple[Id, ...] = ()


# master -> agent, on LAUNCHES (routing key = agent id)


class LaunchTasks(Message):
    """Run these tasks of one framework."""

    type: Literal["LAUNCH"] = "LAUNCH"
    agent_id: Id
    framework_id: Id
    tasks: tuple[TaskInfo, ...] = Field(min_length=1)
    gpu_assignments: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """Task id -> the GPU device ids the master assigned it."""


class KillTask(Message):
    """Stop a task."""

    type: Literal["KILL"] = "KILL"
    agent_id: Id
    framework_id: Id
    task_id: Id
    reason: StatusReason = StatusReason.KILLED_BY_FRAMEWORK


class AcknowledgeUpdates(Message):
    """The framework has these status updates (by uuid): the agent may forget them."""

    type: Literal["ACKNOWLEDGE_UPDATES"] = "ACKNOWLEDGE_UPDATES"
    agent_id: Id
    uuids: tuple[str, ...] = Field(min_length=1, max_length=1024)


class FetchLogs(Message):
    """Send a task's output to ``reply_to`` (the master routes GET_LOGS here)."""

    type: Literal["FETCH_LOGS"] = "FETCH_LOGS"
    agent_id: Id
    framework_id: Id
    task_id: Id
    reply_to: str = Field(min_length=1, max_length=255)
    tail_bytes: int = Field(default=65536, gt=0, le=MAX_MESSAGE_BYTES // 4)


class ExecutorRegistered(Message):
    """An executor is up and consuming its queue (executor -> agent)."""

    type: Literal["EXECUTOR_REGISTERED"] = "EXECUTOR_REGISTERED"
    agent_id: Id
    framework_id: Id
    executor_id: Id


class ExecutorUpdate(Message):
    """A task the executor runs changed state (executor -> agent, which reports it on)."""

    type: Literal["EXECUTOR_UPDATE"] = "EXECUTOR_UPDATE"
    agent_id: Id
    framework_id: Id
    executor_id: Id
    status: TaskStatus


class ExecutorMessage(Message):
    """Opaque data for an executor (master -> agent -> executor)."""

    type: Literal["EXECUTOR_MESSAGE"] = "EXECUTOR_MESSAGE"
    agent_id: Id
    framework_id: Id
    executor_id: Id
    data: str = Field(max_length=MAX_MESSAGE_BYTES // 4)


class RunTask(Message):
    """Run this task (agent -> executor)."""

    type: Literal["RUN_TASK"] = "RUN_TASK"
    task: TaskInfo


class KillExecutorTask(Message):
    """Kill this task (agent -> executor)."""

    type: Literal["KILL_EXECUTOR_TASK"] = "KILL_EXECUTOR_TASK"
    task_id: Id
    grace_seconds: float


class ShutdownExecutor(Message):
    """Stop: kill what still runs and exit (agent -> executor)."""

    type: Literal["SHUTDOWN_EXECUTOR"] = "SHUTDOWN_EXECUTOR"


class ReregisterAgent(Message):
    """Send a full registration: the master does not know this agent (``agent_id``), or a new master
    took over and asks every agent at once (``agent_id`` = ``all``, on the ``all-agents`` key)."""

    type: Literal["REREGISTER"] = "REREGISTER"
    agent_id: Id


class HeartbeatInterval(Message):
    """Heartbeat no more often than every ``seconds`` (the master holds its heartbeat rate as the cluster
    grows). To one agent as it registers, or to every agent at once (``agent_id`` = ``all``)."""

    type: Literal["HEARTBEAT_INTERVAL"] = "HEARTBEAT_INTERVAL"
    agent_id: Id
    seconds: float = Field(ge=0, le=3600)
    """0: the agent's own interval."""


# agent -> master, on STATUS


class StatusUpdate(_Frozen):
    """A task's state changed: one item of STATUS_UPDATES (also what the agent checkpoints)."""

    agent_id: Id
    framework_id: Id
    status: TaskStatus
    trace: dict[str, str] = Field(default_factory=dict, max_length=4)
    """The W3C trace context of the task's offer cycle."""


MAX_BATCH = 256


class StatusUpdates(Message):
    """Status updates of one agent's tasks: under load an agent batches what it has."""

    type: Literal["STATUS_UPDATES"] = "STATUS_UPDATES"
    agent_id: Id
    updates: tuple[StatusUpdate, ...] = Field(min_length=1, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _one_agent(self) -> Self:
        if any(u.agent_id != self.agent_id for u in self.updates):
            raise ValueError("every update must name the agent that sends the batch")
        return self


# framework -> master, on CALLS


class Subscribe(Message):
    """Register a framework. The answer (SUBSCRIBED or ERROR) goes to the AMQP ``reply_to`` queue."""

    type: Literal["SUBSCRIBE"] = "SUBSCRIBE"
    name: str = Field(min_length=1, max_length=128)
    role: str = Field(default="*", min_length=1, max_length=64)
    weight: float = Field(default=1.0, gt=0)
    priority: int = 0
    """Used by the ``priority`` policy: higher is served first."""
    filters: OfferFilters = Field(default_factory=OfferFilters)
    framework_id: Id | None = None
    """Set to re-subscribe after a failover: with the ``secret`` SUBSCRIBED gave, it gets its tasks back."""
    secret: str | None = Field(default=None, max_length=128)
    failover_timeout: float = Field(default=DEFAULT_FAILOVER_TIMEOUT, ge=0, le=7 * 24 * 3600)
    """Seconds a disconnected framework keeps its tasks before they are killed and it is removed."""


class FrameworkCall(Message):
    """A call a subscribed framework makes; the master checks its secret."""

    framework_id: Id
    secret: str = Field(default="", max_length=128)
    """The secret SUBSCRIBED gave: calls that do not carry it are refused."""


class Accept(FrameworkCall):
    """Launch tasks on the resources of one or more offers of one agent."""

    type: Literal["ACCEPT"] = "ACCEPT"
    offer_ids: tuple[Id, ...] = Field(min_length=1)
    tasks: tuple[TaskInfo, ...] = ()
    refuse_seconds: float = Field(default=0.0, ge=0)
    """How long the unused remainder is not offered back to this framework."""


class Decline(FrameworkCall):
    """Give offers back; their agents are not re-offered to this framework for ``refuse_seconds``."""

    type: Literal["DECLINE"] = "DECLINE"
    offer_ids: tuple[Id, ...] = Field(min_length=1)
    refuse_seconds: float = Field(default=DEFAULT_REFUSE_SECONDS, ge=0)


class Kill(FrameworkCall):
    """Kill one of the framework's tasks."""

    type: Literal["KILL_TASK"] = "KILL_TASK"
    task_id: Id


class Acknowledged(_Frozen):
    """One status update the framework has: its agent, task and uuid."""

    agent_id: Id
    task_id: Id
    uuid: str = Field(max_length=64)


class Acknowledge(FrameworkCall):
    """The framework has these status updates: the master tells their agents, which forget them."""

    type: Literal["ACKNOWLEDGE"] = "ACKNOWLEDGE"
    acks: tuple[Acknowledged, ...] = Field(min_length=1, max_length=MAX_BATCH)


class Suppress(FrameworkCall):
    """Stop sending offers to this framework until it revives."""

    type: Literal["SUPPRESS"] = "SUPPRESS"


class Revive(FrameworkCall):
    """Send offers again, and drop the framework's decline filters."""

    type: Literal["REVIVE"] = "REVIVE"


class FrameworkHeartbeat(FrameworkCall):
    """The framework is alive (the SDK sends one every second); silence starts its failover timeout."""

    type: Literal["FRAMEWORK_HEARTBEAT"] = "FRAMEWORK_HEARTBEAT"


class Reconcile(FrameworkCall):
    """Ask for the state of these tasks (explicit) or of all the framework's tasks (implicit, no ids).

    Answers come as UPDATE events with reason RECONCILIATION; unknown tasks are LOST.
    """

    type: Literal["RECONCILE"] = "RECONCILE"
    task_ids: tuple[Id, ...] = ()


class SetFilters(FrameworkCall):
    """Replace the framework's standing filters (kept in etcd, so they survive restarts)."""

    type: Literal["SET_FILTERS"] = "SET_FILTERS"
    filters: OfferFilters


class SendToExecutor(FrameworkCall):
    """Send opaque data to one of the framework's executors on an agent."""

    type: Literal["SEND_TO_EXECUTOR"] = "SEND_TO_EXECUTOR"
    agent_id: Id
    executor_id: Id
    data: str = Field(max_length=MAX_MESSAGE_BYTES // 4)


class GetLogs(Message):
    """Ask for a task's stdout and stderr; TASK_LOGS (or ERROR) answers on the AMQP ``reply_to`` queue.

    ``framework_id`` may be omitted when the task id is unique in the cluster.
    """

    type: Literal["GET_LOGS"] = "GET_LOGS"
    task_id: Id
    framework_id: Id | None = None
    tail_bytes: int = Field(default=65536, gt=0, le=MAX_MESSAGE_BYTES // 4)


class TaskLogs(Message):
    """A task's output (the last ``tail_bytes`` of each stream)."""

    type: Literal["TASK_LOGS"] = "TASK_LOGS"
    framework_id: Id
    task_id: Id
    stdout: str
    stderr: str


class OperatorKill(Message):
    """An operator's kill (``meseta kill``); KILLING (or ERROR) answers on the AMQP ``reply_to`` queue.

    ``framework_id`` may be omitted when the task id is unique among live tasks.
    """

    type: Literal["OPERATOR_KILL"] = "OPERATOR_KILL"
    task_id: Id
    framework_id: Id | None = None


class Killing(Message):
    """The master sent the kill of an operator's OPERATOR_KILL to the task's agent."""

    type: Literal["KILLING"] = "KILLING"
    framework_id: Id
    task_id: Id
    agent_id: Id


class Teardown(FrameworkCall):
    """Remove the framework: its tasks are killed and its offers rescinded."""

    type: Literal["TEARDOWN"] = "TEARDOWN"


# master -> framework, on OFFERS (routing key = framework id)


class Subscribed(Message):
    """The framework is registered under ``framework_id``."""

    type: Literal["SUBSCRIBED"] = "SUBSCRIBED"
    framework_id: Id
    secret: str = Field(max_length=128)
    """Carried by every later call, and needed to re-subscribe after a failover."""
    master_epoch: int = 0


class Offers(Message):
    """New offers for the framework."""

    type: Literal["OFFERS"] = "OFFERS"
    framework_id: Id
    offers: tuple[Offer, ...]


class Rescind(Message):
    """An offer is no longer valid (it expired or its agent left)."""

    type: Literal["RESCIND"] = "RESCIND"
    framework_id: Id
    offer_id: Id


class Update(Message):
    """One status of an UPDATES message, as the SDK hands it to the framework's scheduler (one event per
    status). Not sent on the wire: the master sends UPDATES, a batch of one included."""

    type: Literal["UPDATE"] = "UPDATE"
    framework_id: Id
    status: TaskStatus


class Updates(Message):
    """Status updates of the framework's tasks; the SDK hands them on one by one as ``Update`` events."""

    type: Literal["UPDATES"] = "UPDATES"
    framework_id: Id
    statuses: tuple[TaskStatus, ...] = Field(min_length=1, max_length=1024)
    traces: tuple[dict[str, str], ...] = Field(default=(), max_length=1024)
    """Each status's W3C trace context (its task's offer cycle), in the order of ``statuses``."""


class Failure(Message):
    """An agent running the framework's tasks was lost."""

    type: Literal["FAILURE"] = "FAILURE"
    framework_id: Id
    agent_id: Id


class RevocationNotice(Message):
    """These tasks will be killed with reason REVOKED at ``deadline``: checkpoint now."""

    type: Literal["REVOCATION"] = "REVOCATION"
    framework_id: Id
    agent_id: Id
    task_ids: tuple[Id, ...]
    grace_seconds: float
    deadline: float


class ErrorCode(StrEnum):
    """Why the master refused a call."""

    UNKNOWN_OFFER = "UNKNOWN_OFFER"
    FOREIGN_OFFER = "FOREIGN_OFFER"
    OFFERS_ON_SEVERAL_AGENTS = "OFFERS_ON_SEVERAL_AGENTS"
    INSUFFICIENT_RESOURCES = "INSUFFICIENT_RESOURCES"
    DUPLICATE_TASK_ID = "DUPLICATE_TASK_ID"
    UNKNOWN_FRAMEWORK = "UNKNOWN_FRAMEWORK"
    UNKNOWN_TASK = "UNKNOWN_TASK"
    INVALID_CALL = "INVALID_CALL"
    INVALID_TASK = "INVALID_TASK"
    LOGS_UNAVAILABLE = "LOGS_UNAVAILABLE"
    UNAUTHORIZED = "UNAUTHORIZED"


class Error(Message):
    """A call of the framework was refused; ``correlation_id`` names the call."""

    type: Literal["ERROR"] = "ERROR"
    framework_id: str
    code: ErrorCode
    message: str


# master <-> allocator, on ALLOCATION


class AgentAdded(Message):
    """An agent joined (or re-joined) with these resources not yet allocated."""

    type: Literal["AGENT_ADDED"] = "AGENT_ADDED"
    agent_id: Id
    hostname: str
    attributes: dict[str, str] = Field(default_factory=dict)
    total: Resources
    available: Resources


class AgentRemoved(Message):
    """An agent left: its resources are gone."""

    type: Literal["AGENT_REMOVED"] = "AGENT_REMOVED"
    agent_id: Id


class FrameworkAdded(Message):
    """A framework subscribed (or the master reloaded it)."""

    type: Literal["FRAMEWORK_ADDED"] = "FRAMEWORK_ADDED"
    framework_id: Id
    role: str = "*"
    weight: float = Field(default=1.0, gt=0)
    priority: int = 0
    filters: OfferFilters = Field(default_factory=OfferFilters)
    suppressed: bool = False


class FiltersUpdated(Message):
    """A framework's standing filters changed."""

    type: Literal["FILTERS_UPDATED"] = "FILTERS_UPDATED"
    framework_id: Id
    filters: OfferFilters


class Held(_Frozen):
    """Resources a framework holds on an agent (offered or used)."""

    framework_id: Id
    agent_id: Id
    resources: Resources


class StateSync(Message):
    """The master's whole view, replacing the allocator's (after either of them starts)."""

    type: Literal["STATE_SYNC"] = "STATE_SYNC"
    agents: tuple[AgentAdded, ...] = ()
    frameworks: tuple[FrameworkAdded, ...] = ()
    held: tuple[Held, ...] = ()


class FrameworkRemoved(Message):
    """A framework left; its allocations were recovered separately."""

    type: Literal["FRAMEWORK_REMOVED"] = "FRAMEWORK_REMOVED"
    framework_id: Id


class Recovered(_Frozen):
    """Resources allocated to a framework came back (declined, unused, or their task ended)."""

    framework_id: Id
    agent_id: Id
    resources: Resources
    refuse_seconds: float = Field(default=0.0, ge=0)
    """The framework is not offered this agent again for this long (a decline's filter)."""


class ResourcesRecovered(Message):
    """Recoveries, in one message."""

    type: Literal["RESOURCES_RECOVERED"] = "RESOURCES_RECOVERED"
    items: tuple[Recovered, ...] = Field(min_length=1, max_length=MAX_BATCH)


class OffersSuppressed(Message):
    """The framework wants no offers."""

    type: Literal["OFFERS_SUPPRESSED"] = "OFFERS_SUPPRESSED"
    framework_id: Id


class OffersRevived(Message):
    """The framework wants offers again and its filters are cleared."""

    type: Literal["OFFERS_REVIVED"] = "OFFERS_REVIVED"
    framework_id: Id


class AllocatorStarted(Message):
    """A (re)started allocator asks the master for a STATE_SYNC."""

    type: Literal["ALLOCATOR_STARTED"] = "ALLOCATOR_STARTED"


class Revocation(Message):
    """Take ``resources`` on ``agent_id`` back from ``framework_id`` (quota enforcement)."""

    type: Literal["REVOCATION_REQUEST"] = "REVOCATION_REQUEST"
    framework_id: Id
    agent_id: Id
    resources: Resources
    for_role: str


class Grant(_Frozen):
    """One allocation in an ALLOCATIONS batch, with the trace context of the offer cycle it starts."""

    framework_id: Id
    agent_id: Id
    resources: Resources
    allocated_at: float = Field(default_factory=time.time)
    trace: dict[str, str] = Field(default_factory=dict, max_length=4)


class Allocations(Message):
    """One allocation cycle's grants in one message (a cycle over thousands of free agents is one)."""

    type: Literal["ALLOCATIONS"] = "ALLOCATIONS"
    grants: tuple[Grant, ...] = Field(min_length=1, max_length=MAX_BATCH)


def _union(*models: type[Message]) -> TypeAdapter[Any]:
    if len(models) == 1:
        return TypeAdapter(models[0])
    return TypeAdapter(Annotated[Union[models], Field(discriminator="type")])  # type: ignore[arg-type]  # noqa: UP007


class Channel:
    """What may travel on one exchange (and routing key): the message types and their decoder."""

    def __init__(self, name: str, *models: type[Message]) -> None:
        self.name = name
        self.models = models
        self.types = frozenset(m.model_fields["type"].default for m in models)
        self._adapter = _union(*models)

    def validate(self, data: dict[str, Any]) -> Message:
        """Validate an already-parsed object against this channel's models."""
        message: Message = self._adapter.validate_python(data)
        return message

    def validate_json(self, body: bytes) -> Message:
        """Parse and validate a JSON body against this channel's models."""
        message: Message = self._adapter.validate_json(body)
        return message


HEARTBEATS = Channel(Exchange.HEARTBEATS, RegisterAgent, Heartbeat)
LAUNCHES = Channel(
    Exchange.LAUNCHES,
    LaunchTasks,
    KillTask,
    AcknowledgeUpdates,
    ReregisterAgent,
    HeartbeatInterval,
    FetchLogs,
    ExecutorRegistered,
    ExecutorUpdate,
    ExecutorMessage,
)
EXECUTOR = Channel("executor", RunTask, KillExecutorTask, ShutdownExecutor, ExecutorMessage)
"""What an executor receives from its agent."""
STATUS = Channel(Exchange.STATUS, StatusUpdates)
CALLS = Channel(
    Exchange.CALLS,
    Subscribe,
    Accept,
    Decline,
    Kill,
    Acknowledge,
    Suppress,
    Revive,
    SetFilters,
    Teardown,
    GetLogs,
    OperatorKill,
    SendToExecutor,
    FrameworkHeartbeat,
    Reconcile,
)
REPLIES = Channel("reply", Subscribed, TaskLogs, Killing, Error)
"""Answers that come to a caller's private ``reply_to`` queue."""
FRAMEWORK_EVENTS = Channel(
    Exchange.OFFERS, Subscribed, Offers, Rescind, Updates, Failure, RevocationNotice, Error
)
TO_ALLOCATOR = Channel(
    f"{Exchange.ALLOCATION}/{RoutingKey.TO_ALLOCATOR}",
    AgentAdded,
    AgentRemoved,
    FrameworkAdded,
    FrameworkRemoved,
    ResourcesRecovered,
    OffersSuppressed,
    OffersRevived,
    FiltersUpdated,
    StateSync,
)
TO_MASTER = Channel(
    f"{Exchange.ALLOCATION}/{RoutingKey.TO_MASTER}", Allocations, AllocatorStarted, Revocation
)
CHANNELS: Final = (
    HEARTBEATS,
    LAUNCHES,
    EXECUTOR,
    STATUS,
    CALLS,
    REPLIES,
    FRAMEWORK_EVENTS,
    TO_ALLOCATOR,
    TO_MASTER,
)
"""Every channel: what may travel anywhere in Meseta."""


class DecodeError(ValueError):
    """A message that cannot be accepted; ``reason`` says why, for the dead-letter header and the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(message: Message) -> bytes:
    """Serialize a message for the wire."""
    return message.model_dump_json().encode()


def decode(body: bytes, channel: Channel) -> Message:
    """Parse and validate one message for ``channel``.

    Raises:
        DecodeError: oversized, not JSON, not an object, wrong version, unknown type, or invalid fields.
    """
    if len(body) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"oversized: {len(body)} bytes > {MAX_MESSAGE_BYTES}")
    # Fast path: parsed and validated in one pass by pydantic-core (half the cost of json.loads and then
    # validating the objects). Whatever it refuses goes the slow way below, which says precisely why.
    with contextlib.suppress(ValidationError):
        message = channel.validate_json(body)
        if message.version == PROTOCOL_VERSION and "version" in message.model_fields_set:
            return message
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"malformed: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DecodeError(f"malformed: expected a JSON object, got {type(data).__name__}")
    version = data.get("version")
    if version != PROTOCOL_VERSION:
        raise DecodeError(f"wrong version: {version!r}, this side speaks {PROTOCOL_VERSION}")
    kind = data.get("type")
    if kind not in channel.types:
        raise DecodeError(f"unknown type {kind!r} on {channel.name}; expected one of {sorted(channel.types)}")
    try:
        return channel.validate(data)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise DecodeError(f"invalid {kind}: {errors}") from None


def is_valid_id(value: str) -> bool:
    """Whether ``value`` may serve as an id."""
    return bool(_ID_RE.match(value))
