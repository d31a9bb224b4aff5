"""What an agent knows of a task it runs, and of a custom executor it started."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from meseta.sdk import wire
from meseta.sdk.wire import StatusReason, TaskInfo

TaskKey = tuple[str, str]
"""(framework id, task id)."""


@dataclass
class LocalTask:
    """A task on this agent, from LAUNCH to its terminal state."""

    framework_id: str
    info: TaskInfo
    gpu_ids: tuple[str, ...] = ()
    container_id: str | None = None
    kill_reason: StatusReason | None = None
    """Set once a KILL arrived: the reason the KILLED update will carry."""
    executor: tuple[str, str] | None = None
    """(framework id, executor id) when a custom executor runs the task, or when it is that executor."""
    is_executor: bool = False
    """This is an executor's own container, not a task."""
    launch_env: tuple[tuple[str, str], ...] = ()
    host_network: bool = False
    healthy: bool | None = None
    """Its health check's last verdict (None: no check, or no answer yet)."""
    ready: bool | None = None
    """False until its readiness check passes, then True (None: it has no readiness check)."""
    health_failure: str = ""
    """Why its health check last failed: the FAILED update after too many failures says it."""
    address: str | None = None
    """Where its ports are reached from the agent (its container's address), once a check asked."""
    checks: list[asyncio.Task[None]] = field(default_factory=list)
    """Its running health and readiness checks (meseta.agent.health)."""

    def __post_init__(self) -> None:
        if self.info.readiness_check is not None:
            self.ready = False

    @property
    def key(self) -> TaskKey:
        return (self.framework_id, self.info.task_id)


@dataclass
class ExecutorRun:
    """A custom executor's container on this agent and the tasks it was handed."""

    framework_id: str
    info: wire.ExecutorInfo
    task_id: str
    """The id its own container is accounted and reported under."""
    registered: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[str] = field(default_factory=set)

    def routing_key(self, agent_id: str) -> str:
        return wire.executor_key(agent_id, self.framework_id, self.info.executor_id)
