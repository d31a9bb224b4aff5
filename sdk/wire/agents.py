"""Messages between agents and the master (heartbeats, launches, kills, status updates), and between an
agent and its custom executors."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from meseta.sdk.wire.base import MAX_BATCH, MAX_MESSAGE_BYTES, MAX_SECONDS, Id, Message, Uuid, _Frozen
from meseta.sdk.wire.model import RunningTask, StatusReason, TaskInfo, TaskStatus
from meseta.sdk.wire.resources import Resources

__all__ = [
    "AcknowledgeUpdates",
    "ExecutorMessage",
    "ExecutorRegistered",
    "ExecutorUpdate",
    "FetchLogs",
    "Heartbeat",
    "HeartbeatInterval",
    "KillExecutorTask",
    "KillTask",
    "LaunchMark",
    "LaunchTasks",
    "MarkLaunches",
    "RegisterAgent",
    "ReregisterAgent",
    "RunTask",
    "ShutdownExecutor",
    "StatusUpdate",
    "StatusUpdates",
]


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


class LaunchMark(_Frozen):
    """How far along an agent's queue a launch (or a mark) lies: the leading master's epoch and its count
    of launches sent to that agent in its term. Marks compare as the pair: a later term is further on."""

    epoch: int = Field(ge=0)
    sequence: int = Field(ge=0)

    @property
    def key(self) -> tuple[int, int]:
        return (self.epoch, self.sequence)


class Heartbeat(Message):
    """An agent is alive; ``free`` is what its running tasks leave.

    ``running_tasks`` and ``read`` are taken together: what the agent ran when it had read its queue up
    to ``read``. A STAGING task launched at or before ``read`` and not listed never reached the agent; one
    launched after may still be on its way (a heartbeat queued through a broker outage is old news).
    """

    type: Literal["HEARTBEAT"] = "HEARTBEAT"
    agent_id: Id
    free: Resources
    running_tasks: tuple[Id, ...] = ()
    read: LaunchMark | None = None


# master -> agent, on LAUNCHES (routing key = agent id)


class LaunchTasks(Message):
    """Run these tasks of one framework."""

    type: Literal["LAUNCH"] = "LAUNCH"
    agent_id: Id
    framework_id: Id
    tasks: tuple[TaskInfo, ...] = Field(min_length=1)
    gpu_assignments: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """Task id -> the GPU device ids the master assigned it."""
    mark: LaunchMark | None = None
    """Where this launch lies in the agent's queue (the agent reports the last it read)."""


class MarkLaunches(Message):
    """Every launch to this agent before this message has been sent: report ``mark`` as read once here.
    The master asks when a task stays STAGING unlisted, to learn whether its launch is late or lost."""

    type: Literal["MARK_LAUNCHES"] = "MARK_LAUNCHES"
    agent_id: Id
    mark: LaunchMark


class KillTask(Message):
    """Stop a task."""

    type: Literal["KILL"] = "KILL"
    agent_id: Id
    framework_id: Id
    task_id: Id
    reason: StatusReason = StatusReason.KILLED_BY_FRAMEWORK
    grace_seconds: float | None = Field(default=None, ge=0, le=600)
    """Overrides the task's ``kill_grace_seconds`` for this kill."""


class AcknowledgeUpdates(Message):
    """The framework has these status updates (by uuid): the agent may forget them."""

    type: Literal["ACKNOWLEDGE_UPDATES"] = "ACKNOWLEDGE_UPDATES"
    agent_id: Id
    uuids: tuple[Uuid, ...] = Field(min_length=1, max_length=1024)
    framework_id: Id | None = None
    """Whose updates they are: the agent forgets only that framework's (None: the master acknowledges
    updates of frameworks that are gone)."""


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
    grace_seconds: float = Field(ge=0, le=MAX_SECONDS)


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
