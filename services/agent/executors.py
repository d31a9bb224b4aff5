"""Custom executors on an agent: the executor's container is started (as a task of its own) on the first
task that names it; tasks are handed to it over its own queue once it registers; their updates come back
through the agent; it is shut down when it has no task left, and its tasks fail with it if it dies."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from meseta.agent.tasks import ExecutorRun, LocalTask
from meseta.sdk import wire
from meseta.sdk.bus import Bus
from meseta.sdk.wire import StatusReason, TaskInfo, TaskState

if TYPE_CHECKING:
    from meseta.agent.runner import TaskRunner

log = logging.getLogger(__name__)

EXECUTOR_REGISTRATION_TIMEOUT = 60.0


class Executors:
    """The custom executors of one agent, keyed by (framework id, executor id)."""

    def __init__(self, runner: TaskRunner, bus: Bus) -> None:
        self.runner = runner
        self.bus = bus
        self.agent_id = runner.agent_id
        self.runs: dict[tuple[str, str], ExecutorRun] = {}
        settings = runner.settings
        self.executor_url = settings.executor_amqp_url or (settings.amqp_url if settings.dev else None)
        """What executors are given to reach the broker (None: no custom executors here)."""

    def launch(self, local: LocalTask, executor: wire.ExecutorInfo) -> None:
        """Hand a task to its executor, starting the executor first if it does not run here yet."""
        if self.executor_url is None and (local.framework_id, executor.executor_id) not in self.runs:
            text = (
                "custom executors need the agent's --executor-amqp-url (its executors' own principal) "
                "outside development mode: an executor is never given the agent's credentials"
            )
            self.runner.tasks.pop(local.key, None)
            report = self.runner.report(local, TaskState.ERROR, StatusReason.INVALID_TASK, text)
            self.runner.start_runner(report, local.info.task_id)
            return
        run = self._ensure(local.framework_id, executor)
        local.executor = (local.framework_id, executor.executor_id)
        run.tasks.add(local.info.task_id)
        self.runner.start_runner(self._run_in(local, run), local.info.task_id)

    def _ensure(self, framework_id: str, info: wire.ExecutorInfo) -> ExecutorRun:
        key = (framework_id, info.executor_id)
        if (run := self.runs.get(key)) is not None:
            return run
        assert self.executor_url is not None  # launch() refuses executors without one
        task_id = wire.executor_task_id(info.executor_id, self.agent_id)
        run = self.runs[key] = ExecutorRun(framework_id, info, task_id)
        container = TaskInfo(
            task_id=task_id,
            name=f"executor {info.executor_id}",
            resources=info.resources,
            container=info.container,
        )
        env = (
            ("MESETA_AMQP_URL", self.executor_url),
            ("MESETA_AGENT_ID", self.agent_id),
            ("MESETA_FRAMEWORK_ID", framework_id),
            ("MESETA_EXECUTOR_ID", info.executor_id),
        )
        # Host networking by default: the executor reaches the broker the way the agent does. With
        # --executor-network bridge it gets a network of its own, and its URL must reach the broker from
        # there (the Docker bridge's gateway, say).
        host = self.runner.settings.executor_network == "host"
        local = LocalTask(
            framework_id, container, launch_env=env, host_network=host, executor=key, is_executor=True
        )
        self.runner.tasks[local.key] = local
        self.runner.start_runner(self.runner.run(local), task_id)
        return run

    async def _run_in(self, local: LocalTask, run: ExecutorRun) -> None:
        await self.runner.report(local, TaskState.STARTING)
        try:
            await asyncio.wait_for(run.registered.wait(), EXECUTOR_REGISTRATION_TIMEOUT)
        except TimeoutError:
            await self._end(local, run, TaskState.FAILED, "the executor never registered")
            return
        if local.kill_reason is not None:
            await self._end(local, run, TaskState.KILLED, "killed before start", local.kill_reason)
            return
        await self.bus.publish(
            wire.Exchange.LAUNCHES, run.routing_key(self.agent_id), wire.RunTask(task=local.info)
        )

    async def _end(
        self,
        local: LocalTask,
        run: ExecutorRun,
        state: TaskState,
        text: str,
        reason: StatusReason = StatusReason.EXECUTOR_TERMINATED,
    ) -> None:
        self.runner.tasks.pop(local.key, None)
        run.tasks.discard(local.info.task_id)
        await self.runner.report(local, state, reason, text)
        await self._shutdown_if_idle(run)

    async def _shutdown_if_idle(self, run: ExecutorRun) -> None:
        if not run.tasks and run.registered.is_set():
            await self.bus.publish(
                wire.Exchange.LAUNCHES, run.routing_key(self.agent_id), wire.ShutdownExecutor()
            )

    def registered(self, message: wire.ExecutorRegistered) -> None:
        """The executor consumes its queue: tasks waiting for it go."""
        if (run := self.runs.get((message.framework_id, message.executor_id))) is not None:
            run.registered.set()

    async def update(self, message: wire.ExecutorUpdate) -> None:
        """A task the executor runs changed state: reported on as the agent's own update."""
        run = self.runs.get((message.framework_id, message.executor_id))
        local = self.runner.tasks.get((message.framework_id, message.status.task_id))
        if run is None or local is None or message.status.task_id not in run.tasks:
            log.warning(
                "update for %s from executor %s ignored: not its task",
                message.status.task_id,
                message.executor_id,
            )
            return
        status = message.status.model_copy(update={"agent_id": self.agent_id})
        if status.state.terminal:
            self.runner.tasks.pop(local.key, None)
            run.tasks.discard(local.info.task_id)
        await self.runner.updates.send(local.framework_id, status)
        if status.state.terminal:
            await self._shutdown_if_idle(run)

    async def forward(self, message: wire.ExecutorMessage) -> None:
        """A framework's message to its executor."""
        if (run := self.runs.get((message.framework_id, message.executor_id))) is not None:
            await self.bus.publish(wire.Exchange.LAUNCHES, run.routing_key(self.agent_id), message)

    async def kill(self, local: LocalTask, grace: float) -> None:
        """Ask the task's executor to kill it; one not registered yet kills it before start instead."""
        assert local.executor is not None
        run = self.runs.get(local.executor)
        if run is not None and run.registered.is_set():
            kill = wire.KillExecutorTask(task_id=local.info.task_id, grace_seconds=grace)
            await self.bus.publish(wire.Exchange.LAUNCHES, run.routing_key(self.agent_id), kill)

    async def gone(self, key: tuple[str, str]) -> None:
        """The executor's container ended: every task it still had failed with it."""
        run = self.runs.pop(key, None)
        if run is None:
            return
        for task_id in sorted(run.tasks):
            local = self.runner.tasks.pop((run.framework_id, task_id), None)
            if local is not None:
                text = f"executor {run.info.executor_id} terminated"
                await self.runner.report(local, TaskState.FAILED, StatusReason.EXECUTOR_TERMINATED, text)
        run.tasks.clear()
