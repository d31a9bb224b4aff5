"""Runs an agent's tasks: launch, container start, watch, kill, and recovery after an agent restart.

Every task is a coroutine of its own (a *runner*) that reports STARTING, RUNNING and how it ended through
the :class:`~meseta.agent.updates.StatusUpdater`. Tasks that name a custom executor are handed to
:class:`~meseta.agent.executors.Executors`, which runs the executor's own container as a task here.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from typing import Any

from opentelemetry import trace

from meseta.agent.checkpoint import Checkpoint
from meseta.agent.confinement import Confinement
from meseta.agent.containerizer import Containerizer, ImageMissing, Launch
from meseta.agent.executors import Executors
from meseta.agent.health import Checks
from meseta.agent.images import PullFailed
from meseta.agent.settings import AgentSettings
from meseta.agent.tasks import LocalTask, TaskKey
from meseta.agent.updates import StatusUpdater
from meseta.sdk import tracing, wire
from meseta.sdk.bus import Bus
from meseta.sdk.wire import Resources, StatusReason, TaskState, TaskStatus

log = logging.getLogger(__name__)


class TaskRunner:
    """The tasks of one agent."""

    def __init__(
        self,
        settings: AgentSettings,
        containerizer: Containerizer,
        updates: StatusUpdater,
        checkpoint: Checkpoint,
        bus: Bus,
        confinement: Confinement,
    ) -> None:
        self.agent_id = settings.agent_id
        self.settings = settings
        self.containerizer = containerizer
        self.updates = updates
        self.checkpoint = checkpoint
        self.confinement = confinement
        """Checked here for every containerizer: the process isolator must not mount what Docker may not."""
        self.tasks: dict[TaskKey, LocalTask] = {}
        self.executors = Executors(self, bus)
        self.checks = Checks(containerizer, self._report_check, self._kill_unhealthy)
        self._runners: set[asyncio.Task[None]] = set()
        self._tracer = tracing.tracer("agent")

    def used(self) -> Resources:
        """What the tasks here hold."""
        return wire.total(t.info.resources for t in self.tasks.values())

    # --- launch ------------------------------------------------------------------------------------------

    async def launch(self, message: wire.LaunchTasks) -> None:
        """Start a runner per task (a launch of a task already here is ignored: a redelivery), once the
        launch's tasks are checkpointed (one group commit): a restarted agent re-attaches to them."""
        if self.updates.over_cap(message.framework_id):
            self._refuse_over_cap(message)
            return
        runs: list[LocalTask] = []
        for info in message.tasks:
            key = (message.framework_id, info.task_id)
            if key in self.tasks:
                log.warning("task %s of %s is already here; duplicate launch ignored", info.task_id, key[0])
                continue
            local = LocalTask(message.framework_id, info, message.gpu_assignments.get(info.task_id, ()))
            self.tasks[key] = local
            if info.executor is None:
                runs.append(local)
            else:
                self.executors.launch(local, info.executor)
        # The tasks and their STARTING updates in one group commit (one fsync round, not two, before a
        # task is started), before the launch counts as received.
        await asyncio.gather(
            self.checkpoint.save_tasks(message.framework_id, [(t.info, t.gpu_ids) for t in runs]),
            *(self.report(local, TaskState.STARTING) for local in runs),
        )
        for local in runs:
            self.start_runner(self.run(local, starting_reported=True), local.info.task_id)

    def _refuse_over_cap(self, message: wire.LaunchTasks) -> None:
        text = (
            f"refused: framework {message.framework_id} leaves {self.updates.max_unacknowledged} or more "
            "status updates unacknowledged on this agent; acknowledge them first"
        )
        log.warning("launch of %d tasks %s", len(message.tasks), text)
        for info in message.tasks:
            status = TaskStatus(
                task_id=info.task_id,
                agent_id=self.agent_id,
                state=TaskState.ERROR,
                reason=StatusReason.TOO_MANY_UNACKNOWLEDGED,
                message=text,
            )
            self.start_runner(self.updates.send_once(message.framework_id, status), info.task_id)

    def start_runner(self, coro: Coroutine[Any, Any, None], task_id: str) -> None:
        # The runner inherits the current trace context, so its statuses join the offer cycle's trace.
        runner = asyncio.create_task(coro, name=f"task:{task_id}")
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)

    async def report(
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
            healthy=local.healthy,
            ready=local.ready,
        )
        await self.updates.send(local.framework_id, status)

    async def _report_check(
        self, local: LocalTask, state: TaskState, reason: StatusReason, text: str
    ) -> None:
        if local.kill_reason is None:  # a verdict that lands after a kill began says nothing new
            await self.report(local, state, reason, text)

    async def _kill_unhealthy(self, local: LocalTask, reason: StatusReason) -> None:
        grace = local.info.kill_grace_seconds
        await self.stop_task(local, reason, self.settings.kill_grace_seconds if grace is None else grace)

    async def run(self, local: LocalTask, starting_reported: bool = False) -> None:
        """A task in a container, from STARTING (reported here unless the launch did) to its end."""
        if not starting_reported:
            await self.report(local, TaskState.STARTING)
        attributes = {
            "meseta.service": "agent",
            "meseta.task_id": local.info.task_id,
            "meseta.agent_id": self.agent_id,
            "meseta.framework_id": local.framework_id,
        }
        with self._tracer.start_as_current_span("agent launch", attributes=attributes) as span:
            started = await self._start_container(local, span)
        if started:
            self.checks.start(local)
            await self._watch(local)
        else:
            await self._forget(local)

    async def _start_container(self, local: LocalTask, span: trace.Span) -> bool:
        """Create and start; report RUNNING, or the reason it could not run. True when it runs."""
        try:
            if (refused := self.confinement.refusal(local.info.container)) is not None:
                await self.report(local, TaskState.ERROR, StatusReason.INVALID_TASK, refused)
                return False
            if local.info.resources.gpus != len(local.gpu_ids):
                text = (
                    f"task asks for {local.info.resources.gpus} GPUs but was assigned {list(local.gpu_ids)}"
                )
                await self.report(local, TaskState.ERROR, StatusReason.INVALID_TASK, text)
                return False
            launch = Launch(
                local.info, local.framework_id, local.gpu_ids, local.launch_env, local.host_network
            )
            try:
                local.container_id = await self._create(local, launch)
            except PullFailed as exc:
                await self.report(local, TaskState.ERROR, StatusReason.IMAGE_PULL_FAILED, str(exc))
                return False
            if local.kill_reason is not None:
                await self.report(local, TaskState.KILLED, local.kill_reason, "killed before start")
                return False
            await self.containerizer.start(local.container_id)
        except ImageMissing as exc:
            await self.report(local, TaskState.ERROR, StatusReason.CONTAINER_LAUNCH_FAILED, str(exc))
            return False
        except Exception as exc:  # the engine refused: report, never crash the agent
            log.warning("task %s failed to launch: %s", local.info.task_id, exc)
            await self.report(local, TaskState.FAILED, StatusReason.CONTAINER_LAUNCH_FAILED, str(exc))
            return False
        span.set_attribute("meseta.container_id", local.container_id)
        await self.report(local, TaskState.RUNNING, message=f"container {local.container_id[:12]}")
        return True

    async def _create(self, local: LocalTask, launch: Launch) -> str:
        """The task's container, its image pulled first as its policy says: before every launch under
        ``always``; under ``if-missing`` only once the engine says it lacks the image (as ``docker run``
        does: a launch of a present image costs no extra call). ImageMissing under ``never``."""
        spec = local.info.container
        progress = functools.partial(self._pulling, local)
        if spec.pull == "always":
            await self.containerizer.pull(spec, progress)
        try:
            return await self.containerizer.create(launch)
        except ImageMissing:
            if spec.pull == "never":
                raise
        await self.containerizer.pull(spec, progress)
        return await self.containerizer.create(launch)

    async def _pulling(self, local: LocalTask, text: str) -> None:
        await self.report(local, TaskState.STARTING, StatusReason.IMAGE_PULLING, text)

    async def _watch(self, local: LocalTask) -> None:
        """Wait for the container to end, report how, forget the task (also after an agent restart)."""
        assert local.container_id is not None
        exit_info = await self.containerizer.wait(local.container_id)
        if local.kill_reason == StatusReason.HEALTH_CHECK_FAILED:
            checks = local.info.health_check.max_consecutive_failures if local.info.health_check else 0
            text = (
                f"killed: it failed its health check {checks} times in a row (last: {local.health_failure})"
            )
            await self.report(local, TaskState.FAILED, local.kill_reason, text, exit_info.code)
        elif local.kill_reason is not None:
            await self.report(local, TaskState.KILLED, local.kill_reason, exit_code=exit_info.code)
        elif exit_info.oom_killed:
            # Any kill by the memory limit fails the task, even when its main process survived it.
            text = f"out of memory: over its {local.info.resources.mem:g} MiB"
            await self.report(local, TaskState.FAILED, StatusReason.OOM_KILLED, text, exit_info.code)
        elif exit_info.code == 0:
            await self.report(local, TaskState.FINISHED, StatusReason.CONTAINER_EXITED, exit_code=0)
        else:
            text = f"exited with code {exit_info.code}"
            await self.report(local, TaskState.FAILED, StatusReason.CONTAINER_EXITED, text, exit_info.code)
        await self._forget(local)

    async def _forget(self, local: LocalTask) -> None:
        """The task's terminal update is sent (and checkpointed): drop everything else about it.

        Not reached when the agent stops mid-task: the checkpoint stays, and a restarted agent resumes.
        """
        self.checks.stop(local)
        self.tasks.pop(local.key, None)
        self.checkpoint.drop_task(local.framework_id, local.info.task_id)
        if local.is_executor and local.executor is not None:
            await self.executors.gone(local.executor)
        if local.container_id is not None and self.settings.container_retention <= 0:
            await self.containerizer.remove(local.container_id)

    # --- kill --------------------------------------------------------------------------------------------

    async def kill(self, message: wire.KillTask) -> None:
        """Stop a task: KILLING now, its kill signal, SIGKILL after its grace, KILLED when it has ended;
        LOST (UNKNOWN_TASK) when it is not here. The waiting runs in the background: a long grace never
        holds up the agent's other commands."""
        local = self.tasks.get((message.framework_id, message.task_id))
        if local is None:
            status = TaskStatus(
                task_id=message.task_id,
                agent_id=self.agent_id,
                state=TaskState.LOST,
                reason=StatusReason.UNKNOWN_TASK,
                message="no such task on this agent",
            )
            await self.updates.send(message.framework_id, status)
            return
        grace = message.grace_seconds
        grace = local.info.kill_grace_seconds if grace is None else grace
        grace = self.settings.kill_grace_seconds if grace is None else grace
        await self.stop_task(local, message.reason, grace)

    async def stop_task(self, local: LocalTask, reason: StatusReason, grace: float) -> None:
        """Kill a task for ``reason`` (its terminal update carries it). A second kill while the first
        waits starts another with its own grace: a shorter one ends the wait sooner."""
        again = local.kill_reason is not None
        if not again:
            local.kill_reason = reason
        if local.executor is not None and not local.is_executor:
            await self.executors.kill(local, grace)
            return
        if local.container_id is None:
            return  # not created yet: the launch sees kill_reason and reports KILLED before start
        if not again:
            text = f"{local.info.kill_signal}, then SIGKILL after {grace:g} s"
            await self.report(local, TaskState.KILLING, reason, text)
        self.start_runner(
            self.containerizer.stop(local.container_id, grace, local.info.kill_signal),
            f"{local.info.task_id}:kill",
        )

    # --- restart -----------------------------------------------------------------------------------------

    async def recover(self) -> None:
        """After a restart: re-attach to checkpointed tasks' containers (LOST where one is gone)."""
        for framework_id, info, gpu_ids in self.checkpoint.tasks():
            local = LocalTask(framework_id, info, gpu_ids)
            self.tasks[local.key] = local
            local.container_id = await self.containerizer.find(framework_id, info.task_id)
            if local.container_id is None:
                text = "its container was gone when the agent restarted"
                await self.report(local, TaskState.LOST, StatusReason.CONTAINER_LAUNCH_FAILED, text)
                await self._forget(local)
            else:
                log.info(
                    "recovered task %s of %s (container %s)",
                    info.task_id,
                    framework_id,
                    local.container_id[:12],
                )
                self.checks.start(local)
                self.start_runner(self._watch(local), info.task_id)

    async def stop(self) -> None:
        """Stop watching (the containers run on; a restarted agent finds them again)."""
        for local in self.tasks.values():
            self.checks.stop(local)
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        await self.checks.close()

    # --- logs and retention ------------------------------------------------------------------------------

    async def logs_answer(self, request: wire.FetchLogs) -> wire.Message:
        """A task's output from its live or kept container, or why there is none."""
        local = self.tasks.get((request.framework_id, request.task_id))
        container_id = local.container_id if local is not None else None
        container_id = container_id or await self.containerizer.find(request.framework_id, request.task_id)
        if container_id is None:
            return wire.Error(
                framework_id=request.framework_id,
                code=wire.ErrorCode.LOGS_UNAVAILABLE,
                message=f"task {request.task_id} has no container on {self.agent_id} (past its retention?)",
                correlation_id=request.correlation_id,
            )
        stdout, stderr = await self.containerizer.logs(container_id, request.tail_bytes)
        return wire.TaskLogs(
            framework_id=request.framework_id,
            task_id=request.task_id,
            stdout=stdout,
            stderr=stderr,
            correlation_id=request.correlation_id,
        )

    async def retention_loop(self) -> None:
        """Remove exited containers past the retention, every ``gc_interval``."""
        while True:
            await asyncio.sleep(self.settings.gc_interval)
            removed = await self.containerizer.collect_garbage(self.settings.container_retention)
            if removed:
                log.info("removed %d containers past their retention", removed)
