"""The agent: registers, heartbeats, runs launched tasks in containers and reports their states."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from opentelemetry import trace

from meseta.agent.checkpoint import Checkpoint
from meseta.agent.containerizer import Containerizer, DockerContainerizer, ImageMissing, Launch
from meseta.agent.gpus import discover_gpus
from meseta.agent.noop import NoopContainerizer
from meseta.agent.process import ProcessContainerizer
from meseta.runtime.service import Service
from meseta.sdk import tracing, wire
from meseta.sdk.batching import Batcher
from meseta.sdk.bus import Bus
from meseta.sdk.wire import Resources, StatusReason, TaskInfo, TaskState, TaskStatus

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL = 1.0
DEFAULT_KILL_GRACE = 3.0
DEFAULT_STATUS_RETRY = 10.0
"""Seconds before an unacknowledged update is sent again, doubling each time (Mesos's agent starts at 10 s
too). At 2 s, a burst of 5,000 launches, whose acknowledgements lag seconds behind, resent most updates
and fed the backlog that delayed them."""
MAX_RETRY_DELAY = 60.0
"""A framework away for long is asked once a minute (Mesos backs off to ten; a re-subscribed framework
here waits for the next resend, so a shorter cap)."""
RETRY_TICK = 0.25
EXECUTOR_REGISTRATION_TIMEOUT = 60.0
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
    status_retry_interval: float = DEFAULT_STATUS_RETRY
    """Seconds before an unacknowledged status update is first resent (doubling after each resend)."""
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
    executor: tuple[str, str] | None = None
    """(framework id, executor id) when a custom executor runs the task, or when it is that executor."""
    is_executor: bool = False
    """This is an executor's own container, not a task."""
    launch_env: tuple[tuple[str, str], ...] = ()
    host_network: bool = False


@dataclass
class PendingUpdate:
    """A status update waiting for its acknowledgement."""

    update: wire.StatusUpdate
    due: float
    """When to resend it (monotonic clock)."""
    delay: float = DEFAULT_STATUS_RETRY


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


class AgentService(Service):
    """An agent as a service."""

    name = "agent"

    def __init__(
        self, settings: AgentSettings, containerizer: Containerizer | None = None, bus: Bus | None = None
    ) -> None:
        """``containerizer`` and ``bus`` replace the ones the settings name (the agent emulator shares one
        bus among thousands of agents); a given bus is connected and closed by its owner."""
        super().__init__()
        if not wire.is_valid_id(settings.agent_id):
            raise ValueError(f"invalid agent id {settings.agent_id!r}: must match {wire.ID_PATTERN}")
        self.agent_id = settings.agent_id
        self.gpu_ids = settings.gpu_ids if settings.gpu_ids is not None else discover_gpus()
        # The GPU inventory decides the gpus resource, so offers and device ids always agree.
        self.settings = settings
        self.resources = settings.resources.model_copy(update={"gpus": len(self.gpu_ids)})
        self._owns_bus = bus is None
        self.bus = bus or Bus(settings.amqp_url, self.name)
        self.containerizer: Containerizer
        if containerizer is not None:
            self.containerizer = containerizer
        elif settings.isolator == "docker":
            self.containerizer = DockerContainerizer(settings.cluster, settings.agent_id, settings.docker_url)
        elif settings.isolator == "process":
            self.containerizer = ProcessContainerizer(settings.agent_id, settings.work_dir)
        elif settings.isolator == "noop":
            self.containerizer = NoopContainerizer()
        else:
            raise ValueError(f"unknown isolator {settings.isolator!r}: use docker, process or noop")
        self.tasks: dict[tuple[str, str], LocalTask] = {}
        self.executors: dict[tuple[str, str], ExecutorRun] = {}
        self.unacknowledged: dict[str, PendingUpdate] = {}
        """Status updates the framework has not acknowledged yet, by uuid."""
        self.told_interval = 0.0
        """The heartbeat interval the master asks for at least (0: none; it holds its heartbeat rate)."""
        self._stagger = False
        self.resent = 0
        """Status updates sent again for want of an acknowledgement."""
        self.checkpoint = Checkpoint(settings.work_dir / settings.agent_id)
        self._runners: set[asyncio.Task[None]] = set()
        self._tracer = tracing.tracer(self.name)
        self._updates: Batcher[wire.StatusUpdate] = Batcher(self._publish_updates, max_items=wire.MAX_BATCH)
        self._has_unacknowledged = asyncio.Event()

    @property
    def free(self) -> Resources:
        """What running tasks leave of the agent's resources."""
        return self.resources - wire.total(t.info.resources for t in self.tasks.values())

    async def _start(self) -> None:
        await self.containerizer.ping()
        if self._owns_bus:
            await self.bus.connect()
        queue = await self.bus.declare_queue(
            wire.agent_queue(self.agent_id), wire.Exchange.LAUNCHES, self.agent_id, durable=True
        )
        await queue.bind(wire.Exchange.LAUNCHES, wire.RoutingKey.ALL_AGENTS)
        self._consumer = self.bus.consume(queue, wire.LAUNCHES, self._on_message, fence=True)
        await self._recover()
        await self.register()
        self.spawn(self._heartbeat_loop(), "heartbeats")
        self.spawn(self._retry_loop(), "status-retries")
        self.spawn(self._gc_loop(), "retention")
        log.info(
            "agent %s started with %s (%s isolator)", self.agent_id, self.resources, self.settings.isolator
        )

    async def _stop(self) -> None:
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._updates.drain()
        if self._owns_bus:
            await self.bus.close()
        else:
            self._consumer.cancel()
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
                heartbeat_interval=self.heartbeat_interval,
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

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between heartbeats: this agent's own, or the master's where that is longer."""
        return max(self.settings.heartbeat_interval, self.told_interval)

    def _told(self, seconds: float) -> None:
        if seconds != self.told_interval:
            self.told_interval = seconds
            # Every agent hears a broadcast at once: each starts its new rhythm at a random point of
            # it, or they would all beat in the same second from then on.
            self._stagger = True

    async def _heartbeat_loop(self) -> None:
        while True:
            wait = self.heartbeat_interval
            if self._stagger:
                self._stagger = False
                wait = random.uniform(0, wait)
            await asyncio.sleep(wait)
            # Not waiting for the broker's confirm: the next heartbeat must leave on time, however slow
            # the broker is to confirm this one.
            await self.bus.publish(
                wire.Exchange.HEARTBEATS,
                wire.RoutingKey.HEARTBEAT,
                wire.Heartbeat(
                    agent_id=self.agent_id, free=self.free, running_tasks=tuple(tid for _, tid in self.tasks)
                ),
                wait=False,
            )

    async def _on_message(self, message: wire.Message, _: AbstractIncomingMessage) -> None:
        match message:
            case wire.LaunchTasks():
                self._launch(message)
            case wire.KillTask():
                await self._kill(message)
            case wire.AcknowledgeUpdates():
                for uuid in message.uuids:
                    self.unacknowledged.pop(uuid, None)
                    self.checkpoint.drop_update(uuid)
            case wire.ReregisterAgent():
                await self.register()
            case wire.HeartbeatInterval():
                self._told(message.seconds)
            case wire.FetchLogs():
                await self._send_logs(message)
            case wire.ExecutorRegistered():
                if (run := self.executors.get((message.framework_id, message.executor_id))) is not None:
                    run.registered.set()
            case wire.ExecutorUpdate():
                await self._executor_update(message)
            case wire.ExecutorMessage():
                if (run := self.executors.get((message.framework_id, message.executor_id))) is not None:
                    await self.bus.publish(wire.Exchange.LAUNCHES, run.routing_key(self.agent_id), message)

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
            if info.executor is None:
                self.checkpoint.save_task(message.framework_id, info, local.gpu_ids)
                self._start_runner(self._run(local), info.task_id)
                continue
            run = self._ensure_executor(message.framework_id, info.executor)
            local.executor = (message.framework_id, info.executor.executor_id)
            run.tasks.add(info.task_id)
            self._start_runner(self._run_in_executor(local, run), info.task_id)

    def _start_runner(self, coro: Coroutine[Any, Any, None], task_id: str) -> None:
        # The runner inherits the current trace context, so its statuses join the offer cycle's trace.
        runner = asyncio.create_task(coro, name=f"task:{task_id}")
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)

    def _ensure_executor(self, framework_id: str, info: wire.ExecutorInfo) -> ExecutorRun:
        """The framework's executor on this agent, started if it is not running yet."""
        key = (framework_id, info.executor_id)
        if (run := self.executors.get(key)) is not None:
            return run
        task_id = wire.executor_task_id(info.executor_id, self.agent_id)
        run = self.executors[key] = ExecutorRun(framework_id, info, task_id)
        container = TaskInfo(
            task_id=task_id,
            name=f"executor {info.executor_id}",
            resources=info.resources,
            container=info.container,
        )
        env = (
            ("MESETA_AMQP_URL", self.settings.amqp_url),
            ("MESETA_AGENT_ID", self.agent_id),
            ("MESETA_FRAMEWORK_ID", framework_id),
            ("MESETA_EXECUTOR_ID", info.executor_id),
        )
        # Host networking: the executor reaches the broker the way the agent does.
        local = LocalTask(
            framework_id, container, launch_env=env, host_network=True, executor=key, is_executor=True
        )
        self.tasks[(framework_id, task_id)] = local
        self._start_runner(self._run(local), task_id)
        return run

    async def _run_in_executor(self, local: LocalTask, run: ExecutorRun) -> None:
        await self._report(local, TaskState.STARTING)
        try:
            await asyncio.wait_for(run.registered.wait(), EXECUTOR_REGISTRATION_TIMEOUT)
        except TimeoutError:
            await self._end_in_executor(local, run, TaskState.FAILED, "the executor never registered")
            return
        if local.kill_reason is not None:
            await self._end_in_executor(
                local, run, TaskState.KILLED, "killed before start", local.kill_reason
            )
            return
        await self.bus.publish(
            wire.Exchange.LAUNCHES, run.routing_key(self.agent_id), wire.RunTask(task=local.info)
        )

    async def _end_in_executor(
        self,
        local: LocalTask,
        run: ExecutorRun,
        state: TaskState,
        text: str,
        reason: StatusReason = StatusReason.EXECUTOR_TERMINATED,
    ) -> None:
        self.tasks.pop((local.framework_id, local.info.task_id), None)
        run.tasks.discard(local.info.task_id)
        await self._report(local, state, reason, text)
        await self._shutdown_if_idle(run)

    async def _shutdown_if_idle(self, run: ExecutorRun) -> None:
        if not run.tasks and run.registered.is_set():
            await self.bus.publish(
                wire.Exchange.LAUNCHES, run.routing_key(self.agent_id), wire.ShutdownExecutor()
            )

    async def _executor_update(self, message: wire.ExecutorUpdate) -> None:
        run = self.executors.get((message.framework_id, message.executor_id))
        local = self.tasks.get((message.framework_id, message.status.task_id))
        if run is None or local is None or message.status.task_id not in run.tasks:
            log.warning(
                "update for %s from executor %s ignored: not its task",
                message.status.task_id,
                message.executor_id,
            )
            return
        status = message.status.model_copy(update={"agent_id": self.agent_id})
        if status.state.terminal:
            self.tasks.pop((local.framework_id, local.info.task_id), None)
            run.tasks.discard(local.info.task_id)
        await self._send(local.framework_id, status)
        if status.state.terminal:
            await self._shutdown_if_idle(run)

    async def _executor_gone(self, key: tuple[str, str]) -> None:
        """The executor's container ended: every task it still had failed with it."""
        run = self.executors.pop(key, None)
        if run is None:
            return
        for task_id in sorted(run.tasks):
            local = self.tasks.pop((run.framework_id, task_id), None)
            if local is not None:
                await self._report(
                    local,
                    TaskState.FAILED,
                    StatusReason.EXECUTOR_TERMINATED,
                    f"executor {run.info.executor_id} terminated",
                )
        run.tasks.clear()

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
        grace_default = self.settings.kill_grace_seconds
        if local.executor is not None and not local.is_executor:
            run = self.executors.get(local.executor)
            if run is not None and run.registered.is_set():
                grace = local.info.kill_grace_seconds
                kill = wire.KillExecutorTask(
                    task_id=local.info.task_id, grace_seconds=grace_default if grace is None else grace
                )
                await self.bus.publish(wire.Exchange.LAUNCHES, run.routing_key(self.agent_id), kill)
            return
        if local.container_id is not None:
            grace = local.info.kill_grace_seconds
            await self.containerizer.stop(
                local.container_id, self.settings.kill_grace_seconds if grace is None else grace
            )

    async def _send(self, framework_id: str, status: TaskStatus) -> None:
        """Checkpoint, then publish (persistent, in a batch with whatever else is pending); it is resent
        until the framework acknowledges it."""
        update = wire.StatusUpdate(
            agent_id=self.agent_id, framework_id=framework_id, status=status, trace=tracing.inject({})
        )
        self.checkpoint.save_update(update)
        delay = self.settings.status_retry_interval
        self.unacknowledged[status.uuid] = PendingUpdate(update, due=time.monotonic() + delay, delay=delay)
        self._has_unacknowledged.set()
        self._updates.add(update)

    async def _publish_updates(self, updates: list[wire.StatusUpdate]) -> None:
        message = wire.StatusUpdates(agent_id=self.agent_id, updates=tuple(updates))
        await self.bus.publish(wire.Exchange.STATUS, wire.RoutingKey.STATUS, message, persistent=True)

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
        if started:
            await self._watch(local)
        else:
            await self._forget(local)

    async def _watch(self, local: LocalTask) -> None:
        """Wait for the container to end, report how, forget the task (also after an agent restart)."""
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
            await self._report(local, TaskState.FAILED, StatusReason.CONTAINER_EXITED, text, exit_info.code)
        await self._forget(local)

    async def _forget(self, local: LocalTask) -> None:
        """The task's terminal update is sent (and checkpointed): drop everything else about it.

        Not reached when the agent stops mid-task: the checkpoint stays, and a restarted agent resumes.
        """
        self.tasks.pop((local.framework_id, local.info.task_id), None)
        self.checkpoint.drop_task(local.framework_id, local.info.task_id)
        if local.is_executor and local.executor is not None:
            await self._executor_gone(local.executor)
        if local.container_id is not None and self.settings.container_retention <= 0:
            await self.containerizer.remove(local.container_id)

    async def _recover(self) -> None:
        """After a restart: re-attach to checkpointed tasks' containers, requeue unacknowledged updates."""
        for framework_id, info, gpu_ids in self.checkpoint.tasks():
            local = LocalTask(framework_id, info, gpu_ids)
            self.tasks[(framework_id, info.task_id)] = local
            local.container_id = await self.containerizer.find(framework_id, info.task_id)
            if local.container_id is None:
                text = "its container was gone when the agent restarted"
                await self._report(local, TaskState.LOST, StatusReason.CONTAINER_LAUNCH_FAILED, text)
                await self._forget(local)
            else:
                log.info(
                    "recovered task %s of %s (container %s)",
                    info.task_id,
                    framework_id,
                    local.container_id[:12],
                )
                self._start_runner(self._watch(local), info.task_id)
        for update in self.checkpoint.updates():
            self.unacknowledged[update.status.uuid] = PendingUpdate(update, due=0.0)
            self._has_unacknowledged.set()
        if self.unacknowledged:
            log.info("resending %d unacknowledged status updates", len(self.unacknowledged))

    async def _retry_loop(self) -> None:
        """At-least-once: resend each unacknowledged update, backing off, until it is acknowledged."""
        while True:
            if not self.unacknowledged:
                # Idle agents do not tick: thousands of them in one emulator would spend a core on timers.
                self._has_unacknowledged.clear()
                await self._has_unacknowledged.wait()
            await asyncio.sleep(RETRY_TICK)
            now = time.monotonic()
            for pending in list(self.unacknowledged.values()):
                if pending.due <= now and pending.update.status.uuid in self.unacknowledged:
                    # A new message id: receivers drop an id they have handled (a broker redelivery), and
                    # a lone resend, published as itself, was dropped so. In a batch with the rest: under a
                    # launch burst acknowledgements lag, and thousands of single resends fed the backlog.
                    resend = pending.update.model_copy(update={"message_id": wire.unique_hex()})
                    self._updates.add(resend, tracing.extract(resend.trace))  # in its task's trace
                    self.resent += 1
                    pending.delay = min(pending.delay * 2, MAX_RETRY_DELAY)
                    pending.due = now + pending.delay

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
            launch = Launch(
                local.info, local.framework_id, local.gpu_ids, local.launch_env, local.host_network
            )
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
