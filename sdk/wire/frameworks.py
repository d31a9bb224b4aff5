"""Messages between frameworks (and operators) and the master: calls, answers, events."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from meseta.sdk.wire.base import (
    DEFAULT_FAILOVER_TIMEOUT,
    DEFAULT_REFUSE_SECONDS,
    MAX_BATCH,
    MAX_MESSAGE_BYTES,
    MAX_PRIORITY,
    MAX_SECONDS,
    MAX_WEIGHT,
    Id,
    Message,
    Uuid,
    _Frozen,
)
from meseta.sdk.wire.model import Offer, OfferFilters, TaskInfo, TaskStatus

__all__ = [
    "Accept",
    "Acknowledge",
    "Acknowledged",
    "Capability",
    "Decline",
    "DrainNotice",
    "Error",
    "ErrorCode",
    "Failure",
    "FrameworkCall",
    "FrameworkHeartbeat",
    "GetLogs",
    "Kill",
    "Killing",
    "Offers",
    "OperatorKill",
    "Reconcile",
    "Rescind",
    "Revive",
    "RevocationNotice",
    "SendToExecutor",
    "SetFilters",
    "Subscribe",
    "Subscribed",
    "Suppress",
    "TaskLogs",
    "Teardown",
    "Update",
    "Updates",
]


# framework -> master, on CALLS


class Capability(StrEnum):
    """What a framework declares it understands (Mesos's FrameworkInfo.Capability)."""

    PARTITION_AWARE = "PARTITION_AWARE"
    """Its tasks on a silent agent become UNREACHABLE (then RUNNING again, or GONE), not LOST."""


class Subscribe(Message):
    """Register a framework. The answer (SUBSCRIBED or ERROR) goes to the AMQP ``reply_to`` queue."""

    type: Literal["SUBSCRIBE"] = "SUBSCRIBE"
    name: str = Field(min_length=1, max_length=128)
    role: str = Field(default="*", min_length=1, max_length=64)
    weight: float = Field(default=1.0, gt=0, le=MAX_WEIGHT)
    priority: int = Field(default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    """Used by the ``priority`` policy: higher is served first."""
    filters: OfferFilters = Field(default_factory=OfferFilters)
    framework_id: Id | None = None
    """Set to re-subscribe after a failover: with the ``secret`` SUBSCRIBED gave, it gets its tasks back."""
    secret: str | None = Field(default=None, max_length=128)
    failover_timeout: float = Field(default=DEFAULT_FAILOVER_TIMEOUT, ge=0, le=7 * 24 * 3600)
    """Seconds a disconnected framework keeps its tasks before they are killed and it is removed."""
    capabilities: tuple[Capability, ...] = Field(default=(), max_length=8)


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
    refuse_seconds: float = Field(default=0.0, ge=0, le=MAX_SECONDS)
    """How long the unused remainder is not offered back to this framework."""


class Decline(FrameworkCall):
    """Give offers back; for ``refuse_seconds`` this framework is not offered what they held again (a slice
    of one of their agents with more in it is offered: as Mesos's refusal filters)."""

    type: Literal["DECLINE"] = "DECLINE"
    offer_ids: tuple[Id, ...] = Field(min_length=1)
    refuse_seconds: float = Field(default=DEFAULT_REFUSE_SECONDS, ge=0, le=MAX_SECONDS)


class Kill(FrameworkCall):
    """Kill one of the framework's tasks."""

    type: Literal["KILL_TASK"] = "KILL_TASK"
    task_id: Id
    grace_seconds: float | None = Field(default=None, ge=0, le=600)
    """Overrides the task's ``kill_grace_seconds`` for this kill."""


class Acknowledged(_Frozen):
    """One status update the framework has: its agent, task and uuid."""

    agent_id: Id
    task_id: Id
    uuid: Uuid


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
    grace_seconds: float = Field(ge=0, le=MAX_SECONDS)
    deadline: float


class DrainNotice(Message):
    """An operator drains ``agent_id`` (for maintenance, an upgrade): it gets no new offers, and these
    tasks are killed with reason AGENT_DRAINED at ``deadline`` (wall-clock time) unless they end first.
    Start their replacements elsewhere now (Mesos's inverse offer, Nomad's drain deadline)."""

    type: Literal["DRAIN"] = "DRAIN"
    framework_id: Id
    agent_id: Id
    task_ids: tuple[Id, ...]
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
