"""What messages speak of: tasks, their states and statuses, offers, filters."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from meseta.sdk.wire.base import Id, Uuid, _Frozen, unique_hex
from meseta.sdk.wire.resources import Resources

__all__ = [
    "AttributeConstraint",
    "ContainerSpec",
    "ExecutorInfo",
    "HealthCheck",
    "Mount",
    "Offer",
    "OfferFilters",
    "RegistryAuth",
    "RunningTask",
    "StatusReason",
    "TaskInfo",
    "TaskState",
    "TaskStatus",
]


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
    UNREACHABLE = "UNREACHABLE"
    """Its agent fell silent (a partition-aware framework's task): it may still run, and comes back
    RUNNING if the agent returns within the master's ``unreachable_timeout``."""
    GONE = "GONE"
    """Its agent stayed unreachable past ``unreachable_timeout``: the task is killed if the agent returns."""
    UNKNOWN = "UNKNOWN"
    """A reconciliation answer to a partition-aware framework: the master has never heard of the task."""

    @property
    def terminal(self) -> bool:
        """A task in a terminal state holds no resources and changes no more."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        TaskState.FINISHED,
        TaskState.FAILED,
        TaskState.KILLED,
        TaskState.LOST,
        TaskState.ERROR,
        TaskState.GONE,
        TaskState.UNKNOWN,
    }
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
    LAUNCH_LOST = "LAUNCH_LOST"
    """Its agent never received the launch (its heartbeats do not list it, long after): LOST."""
    TOO_MANY_UNACKNOWLEDGED = "TOO_MANY_UNACKNOWLEDGED"
    """The agent refused the launch: its framework leaves too many status updates unacknowledged there."""
    AGENT_DRAINED = "AGENT_DRAINED"
    """Its agent was drained by an operator and the drain's deadline passed: KILLED."""
    INVALID_OFFERS = "INVALID_OFFERS"
    """Its ACCEPT was refused for its offers (expired, used, another's): this master did not launch it.
    After a failover the deposed master may have (the accept then came again): reconcile to be sure."""
    IMAGE_PULLING = "IMAGE_PULLING"
    """STARTING: the agent is pulling the task's image (the message names it)."""
    IMAGE_PULL_FAILED = "IMAGE_PULL_FAILED"
    """ERROR: the image could not be pulled (the message gives the registry's answer, or the timeout)."""
    HEALTH_CHANGED = "HEALTH_CHANGED"
    """RUNNING again with a new ``healthy`` (Mesos's TASK_HEALTH_CHECK_STATUS_UPDATED)."""
    READY = "READY"
    """RUNNING again with ``ready`` true: its readiness check passed."""
    HEALTH_CHECK_FAILED = "HEALTH_CHECK_FAILED"
    """FAILED: it failed its health check ``max_consecutive_failures`` times in a row and was killed."""
    AGENT_UNREACHABLE = "AGENT_UNREACHABLE"
    """UNREACHABLE, then GONE: its agent fell silent past the agent timeout (then ``unreachable_timeout``)."""
    AGENT_REREGISTERED = "AGENT_REREGISTERED"
    """RUNNING again: its unreachable agent came back with the task still running."""


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
    user: str | None = Field(default=None, pattern=r"^[0-9]{1,10}(:[0-9]{1,10})?$")
    """Run as this numeric ``uid[:gid]`` instead of the image's user (the agent's ``--task-user`` when
    unset); numeric, as an image need not have a passwd entry for it."""
    pull: Literal["if-missing", "always", "never"] = "if-missing"
    """When the agent pulls ``image`` from its registry: when the agent lacks it, before every launch,
    or never (an image the agent lacks is then an ERROR)."""
    registry_auth: RegistryAuth | None = None
    """Credentials for the pull; the agent's own (``--registry-auth-file``) when unset."""

    def argv(self) -> tuple[str, ...]:
        """The full command line."""
        return self.command + self.arguments

    @classmethod
    def shell(cls, image: str, script: str, env: dict[str, str] | None = None) -> ContainerSpec:
        """A container that runs ``script`` with ``sh -c``."""
        return cls(image=image, command=("sh", "-c", script), env=env or {})


class RegistryAuth(_Frozen):
    """Credentials for the registry a task's image is pulled from (kept out of logs and the state API)."""

    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=4096, repr=False)


class HealthCheck(_Frozen):
    """A check the agent runs against a running task, as Mesos's HealthCheck and Nomad's check.

    ``command`` runs inside the task's container (exit 0 is healthy); ``http`` GETs ``path`` on the task's
    port (2xx and 3xx are healthy); ``tcp`` connects to it. The port is ``port``, or the task's
    ``port_index``-th port when unset. Failures in the first ``grace_period_seconds`` do not count (the
    grace ends early at the first success).
    """

    kind: Literal["command", "http", "tcp"]
    command: tuple[str, ...] = Field(default=(), max_length=64)
    port: int | None = Field(default=None, ge=1, le=65535)
    port_index: int = Field(default=0, ge=0, le=1023)
    path: str = Field(default="/", pattern=r"^/", max_length=1024)
    delay_seconds: float = Field(default=0.0, ge=0, le=3600)
    """Before the first check."""
    interval_seconds: float = Field(default=10.0, ge=0.1, le=3600)
    timeout_seconds: float = Field(default=5.0, gt=0, le=600)
    grace_period_seconds: float = Field(default=10.0, ge=0, le=3600)
    max_consecutive_failures: int = Field(default=3, ge=1, le=1000)

    @field_validator("command")
    @classmethod
    def _command_for_command_checks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(len(part) > 4096 for part in v):
            raise ValueError("a health check's command words are at most 4096 characters")
        return v

    @model_validator(mode="after")
    def _command_given(self) -> HealthCheck:
        if self.kind == "command" and not self.command:
            raise ValueError("a command health check needs a command")
        return self


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

    With ``executor`` unset it is a command task: one container of its own. A kill sends ``kill_signal``,
    waits ``kill_grace_seconds`` (the agent's default when unset), then sends SIGKILL.
    """

    task_id: Id
    name: str = Field(default="", max_length=256)
    resources: Resources
    container: ContainerSpec
    kill_grace_seconds: float | None = Field(default=None, ge=0, le=600)
    kill_signal: str = Field(default="SIGTERM", pattern=r"^SIG[A-Z0-9]{2,8}$")
    executor: ExecutorInfo | None = None
    health_check: HealthCheck | None = None
    """Run while the task runs: updates carry ``healthy``; too many failures in a row kill it (FAILED)."""
    readiness_check: HealthCheck | None = None
    """Run until it first passes: then one RUNNING update with ``ready`` true (reason READY)."""

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
    healthy: bool | None = None
    """The health check's verdict (None: the task has none, or it has not answered yet)."""
    ready: bool | None = None
    """The readiness check's verdict (None: the task has none); once true it stays true."""
    uuid: Uuid = Field(default_factory=lambda: unique_hex())
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
