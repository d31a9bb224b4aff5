"""The agent: registers, heartbeats, runs launched tasks in containers and reports their states."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path

from aio_pika.abc import AbstractIncomingMessage
from opentelemetry import trace

from meseta.agent.containerizer import Containerizer, DockerContainerizer, ImageMissing, Launch
from meseta.agent.gpus import discover_gpus
from meseta.agent.process import ProcessContainerizer
from meseta.runtime.service import Service
from meseta.sdk import tracing, wire
from meseta.sdk.bus import Bus
from meseta.sdk.wire import Resources, StatusReason, TaskInfo, TaskState, TaskStatus

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL = 1.0
DEFAULT_KILL_GRACE = 3.0
DEFAULT_RETENTION = 600.0


def default_agent_id() -> str:
    """``agent-<hostname>``, trimmed to the id alphabet."""
    host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
    return f"agent-{host}"[:128]


@dataclass(frozen=True)
class AgentSettings:
    """How an agent runs."""

    amqp_url: str
    resources: Resources
    agent_id: str = field(default_factory=default_agent_id)
    hostname: str = field(default_factory=socket.gethostname)
    attributes: dict[str, str] = field(default_factory=dict)
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    cluster: str = "meseta"
    """Label on every container this agent starts; one cluster's containers are found by it."""
    container_retention: float = DEFAULT_RETENTION
    """Seconds an exited task's container (and its logs) is kept before it is removed."""
    gc_interval: float = 5.0
    kill_grace_seconds: float = DEFAULT_KILL_GRACE
    """SIGTERM-to-SIGKILL time for tasks that do not set their own."""
    isolator: str = "docker"
    """``docker`` (default) or ``process`` (subprocesses with cgroup/rlimit limits, no Docker needed)."""
    work_dir: Path = Path("/var/tmp/meseta-agent")
    docker_url: str | None = None
    gpu_ids: tuple[str, ...] | None = None
    """GPU device ids to offer; None: discover them through NVML (none when there is no NVIDIA driver)."""


@dataclass
class LocalTask:
    """A task on this agent, from LAUNCH to its terminal state."""

    framework_id: str
    info: TaskInfo
    gpu_ids: tuple[str, ...] = ()
    container_id: str | None = None
    kill_reason: StatusReason | None = None
    """Set once a KILL arrived: the reason the KILLED update will carry."""


class AgentService(Service):
    """An agent as a service."""

    name = "agent"

    def __init__(self, settings: AgentSettings) -> None:
        super().__init__()
        if not wire.is_valid_id(settings.agent_id):
            raise ValueError(f"invalid agent id {settings.agent_id!r}: must match {wire.ID_PATTERN}")
        self.agent_id = settings.agent_id
        self.gpu_ids = settings.gpu_ids if settings.gpu_ids is not None else discover_gpus()
        # The GPU inventory decides the gpus resource, so offers and device ids always agree.
        self.settings = settings
        self.resources = settings.resources.model_copy(update={"gpus": len(self.gpu_ids)})
        self.bus = Bus(settings.amqp_url, self.name)
        self.containerizer: Containerizer
        if settings.isolator == "docker":
            self.containerizer = DockerContainerizer(settings.cluster, settings.agent_id, settings.docker_url)
        elif settings.isolator == "process":
            self.containerizer = ProcessContainerizer(settings.agent_id, settings.work_dir)
        else:
            raise ValueError(f"unknown isolator {settings.isolator!r}: use docker or process")
        self.tasks: dict[tuple[str, str], LocalTask] = {}
        self.unacknowledged: dict[str, wire.StatusUpdate] = {}
        """Status updates the framework has not acknowledged yet, by uuid."""
        self._runners: set[asyncio.Task[None]] = set()
        self._tracer = tracing.tracer(self.name)

    @property
    def free(self) -> Resources:
        """What running tasks leave of the agent's resources."""
        return self.resources - wire.total(t.info.resources for t in self.tasks.values())

    async def _start(self) -> None:
        await self.containerizer.ping()
        await self.bus.connect()
        queue = await self.bus.declare_queue(
            wire.agent_queue(self.agent_id), wire.Exchange.LAUNCHES, self.agent_id, durable=True
        )
        self.bus.consume(queue, wire.LAUNCHES, self._on_message)
        await self.register()
        self.spawn(self._heartbeat_loop(), "heartbeats")
        self.spawn(self._gc_loop(), "retention")
        log.info(
            "agent %s started with %s (%s isolator)", self.agent_id, self.resources, self.settings.isolator
        )

    async def _stop(self) -> None:
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        await self.bus.close()
        self.containerizer.close()

    async def register(self) -> None:
        """Announce this agent with its whole inventory."""
        await self.bus.publish(
            wire.Exchange.HEARTBEATS,
            wire.RoutingKey.HEARTBEAT,
            wire.RegisterAgent(
                agent_id=self.agent_id,
                hostname=self.settings.hostname,
                attributes=self.settings.attributes,
                resources=self.resources,
                gpu_ids=self.gpu_ids,
                running_tasks=tuple(
                    wire.RunningTask(
                        framework_id=t.framework_id,
                        task_id=t.info.task_id,
                        resources=t.info.resources,
                        gpu_ids=t.gpu_ids,
                    )
                    for t in self.tasks.values()
                ),
            ),
        )

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            await self.bus.publish(
                wire.Exchange.HEARTBEATS,
                wire.RoutingKey.HEARTBEAT,
                wire.Heartbeat(
                    agent_id=self.agent_id, free=self.free, running_tasks=tuple(tid for _, tid in self.tasks)
                ),
            )

    async def _on_message(self, message: wire.Message, _: AbstractIncomingMessage) -> None:
        match message:
            case wire.LaunchTasks():
                self._launch(message)
            case wire.KillTask():
                await self._kill(message)
            case wire.AcknowledgeUpdate():
                self.unacknowledged.pop(message.uuid, None)
            case wire.ReregisterAgent():
                await self.register()
            case wire.FetchLogs():
                await self._send_logs(message)

    def _launch(self, message: wire.LaunchTasks) -> None:
        for info in message.tasks:
            key = (message.framework_id, info.task_id)
            if key in self.tasks:
                log.warning(
                    "task %s of %s is already here; duplicate launch ignored",
                    info.task_id,
                    message.framework_id,
                )
                continue
            local = LocalTask(message.framework_id, info, message.gpu_assignments.get(info.task_id, ()))
            self.tasks[key] = local
            # The runner inherits the current trace context, so its statuses join the offer cycle's trace.
            runner = asyncio.create_task(self._run(local), name=f"task:{info.task_id}")
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)

    async def _kill(self, message: wire.KillTask) -> None:
        local = self.tasks.get((message.framework_id, message.task_id))
        if local is None:
            await self._send(
                message.framework_id,
                TaskStatus(
                    task_id=message.task_id,
                    agent_id=self.agent_id,
                    state=TaskState.LOST,
                    reason=StatusReason.UNKNOWN_TASK,
                    message="no such task on this agent",
                ),
            )
            return
        local.kill_reason = message.reason
        if local.container_id is not None:
            grace = local.info.kill_grace_seconds
            await self.containerizer.stop(
                local.container_id, self.settings.kill_grace_seconds if grace is None else grace
            )

    async def _send(self, framework_id: str, status: TaskStatus) -> None:
        update = wire.StatusUpdate(agent_id=self.agent_id, framework_id=framework_id, status=status)
        self.unacknowledged[status.uuid] = update
        await self.bus.publish(wire.Exchange.STATUS, wire.RoutingKey.STATUS, update)

    async def _report(
        self,
        local: LocalTask,
        state: TaskState,
        reason: StatusReason | None = None,
        message: str = "",
        exit_code: int | None = None,
    ) -> None:
        status = TaskStatus(
            task_id=local.info.task_id,
            agent_id=self.agent_id,
            state=state,
            reason=reason,
            message=message,
            exit_code=exit_code,
        )
        await self._send(local.framework_id, status)

    async def _run(self, local: LocalTask) -> None:
        key = (local.framework_id, local.info.task_id)
        try:
            await self._report(local, TaskState.STARTING)
            with self._tracer.start_as_current_span(
                "agent launch",
                attributes={
                    "meseta.service": self.name,
                    "meseta.task_id": local.info.task_id,
                    "meseta.agent_id": self.agent_id,
                    "meseta.framework_id": local.framework_id,
                },
            ) as span:
                started = await self._start_container(local, span)
            if not started:
                return
            assert local.container_id is not None
            exit_info = await self.containerizer.wait(local.container_id)
            if local.kill_reason is not None:
                await self._report(local, TaskState.KILLED, local.kill_reason, exit_code=exit_info.code)
            elif exit_info.oom_killed:
                # Any kill by the memory limit fails the task, even when its main process survived it.
                text = f"out of memory: over its {local.info.resources.mem:g} MiB"
                await self._report(local, TaskState.FAILED, StatusReason.OOM_KILLED, text, exit_info.code)
            elif exit_info.code == 0:
                await self._report(local, TaskState.FINISHED, StatusReason.CONTAINER_EXITED, exit_code=0)
            else:
                text = f"exited with code {exit_info.code}"
                await self._report(
                    local, TaskState.FAILED, StatusReason.CONTAINER_EXITED, text, exit_info.code
                )
        finally:
            self.tasks.pop(key, None)
            if local.container_id is not None and self.settings.container_retention <= 0:
                await asyncio.shield(self.containerizer.remove(local.container_id))

    async def _gc_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.gc_interval)
            removed = await self.containerizer.collect_garbage(self.settings.container_retention)
            if removed:
                log.info("removed %d containers past their retention", removed)

    async def _send_logs(self, request: wire.FetchLogs) -> None:
        """Answer a log request straight to the asker, from the live or kept container."""
        local = self.tasks.get((request.framework_id, request.task_id))
        container_id = local.container_id if local is not None else None
        container_id = container_id or await self.containerizer.find(request.framework_id, request.task_id)
        answer: wire.Message
        if container_id is None:
            answer = wire.Error(
                framework_id=request.framework_id,
                code=wire.ErrorCode.LOGS_UNAVAILABLE,
                message=f"task {request.task_id} has no container on {self.agent_id} (past its retention?)",
                correlation_id=request.correlation_id,
            )
        else:
            stdout, stderr = await self.containerizer.logs(container_id, request.tail_bytes)
            answer = wire.TaskLogs(
                framework_id=request.framework_id,
                task_id=request.task_id,
                stdout=stdout,
                stderr=stderr,
                correlation_id=request.correlation_id,
            )
        await self.bus.publish("", request.reply_to, answer)

    async def _start_container(self, local: LocalTask, span: trace.Span) -> bool:
        """Create and start; report RUNNING, or the reason it could not run. True when it runs."""
        try:
            if local.info.resources.gpus != len(local.gpu_ids):
                text = (
                    f"task asks for {local.info.resources.gpus} GPUs but was assigned {list(local.gpu_ids)}"
                )
                await self._report(local, TaskState.ERROR, StatusReason.INVALID_TASK, text)
                return False
            launch = Launch(local.info, local.framework_id, local.gpu_ids)
            local.container_id = await self.containerizer.create(launch)
            if local.kill_reason is not None:
                await self._report(local, TaskState.KILLED, local.kill_reason, "killed before start")
                return False
            await self.containerizer.start(local.container_id)
        except ImageMissing as exc:
            await self._report(local, TaskState.ERROR, StatusReason.CONTAINER_LAUNCH_FAILED, str(exc))
            return False
        except Exception as exc:  # the engine refused: report, never crash the agent
            log.warning("task %s failed to launch: %s", local.info.task_id, exc)
            await self._report(local, TaskState.FAILED, StatusReason.CONTAINER_LAUNCH_FAILED, str(exc))
            return False
        span.set_attribute("meseta.container_id", local.container_id)
        await self._report(local, TaskState.RUNNING, message=f"container {local.container_id[:12]}")
        return True
