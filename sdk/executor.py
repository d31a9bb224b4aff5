"""Custom executors: a framework's own process on an agent that runs many of its tasks.

The agent starts an executor container once per framework and executor id, with ``MESETA_AMQP_URL``,
``MESETA_AGENT_ID``, ``MESETA_FRAMEWORK_ID`` and ``MESETA_EXECUTOR_ID`` set. Inside it,
:func:`run_executor` connects back, registers, and calls your :class:`Executor` for every task the agent
hands it; status updates sent through the :class:`ExecutorDriver` reach the framework like any other.
When the executor dies, its unfinished tasks are reported FAILED with reason EXECUTOR_TERMINATED.

``python -m meseta.sdk.executor`` runs :class:`CommandExecutor`, which runs each task's command as a
subprocess of the executor's container.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping

from aio_pika.abc import AbstractIncomingMessage

from meseta.sdk import eventloop, wire
from meseta.sdk.bus import Bus
from meseta.sdk.wire import StatusReason, TaskInfo, TaskState, TaskStatus

log = logging.getLogger(__name__)


class ExecutorDriver:
    """What an executor uses to talk to its agent."""

    def __init__(self, bus: Bus, agent_id: str, framework_id: str, executor_id: str) -> None:
        self.bus = bus
        self.agent_id = agent_id
        self.framework_id = framework_id
        self.executor_id = executor_id
        self.stopped = asyncio.Event()

    async def send_status(
        self,
        task_id: str,
        state: TaskState,
        *,
        message: str = "",
        reason: StatusReason | None = None,
        exit_code: int | None = None,
    ) -> None:
        """Report a task's new state; the agent passes it on to the framework."""
        status = TaskStatus(
            task_id=task_id,
            state=state,
            agent_id=self.agent_id,
            message=message,
            reason=reason,
            exit_code=exit_code,
        )
        update = wire.ExecutorUpdate(
            agent_id=self.agent_id,
            framework_id=self.framework_id,
            executor_id=self.executor_id,
            status=status,
        )
        await self.bus.publish(wire.Exchange.LAUNCHES, self.agent_id, update)

    def stop(self) -> None:
        """End :func:`run_executor` (after a shutdown, or when the executor decides to exit)."""
        self.stopped.set()


class Executor:
    """Callbacks of a custom executor; override what you need."""

    async def registered(self, driver: ExecutorDriver) -> None:
        """The agent knows this executor; tasks follow."""

    async def launch(self, driver: ExecutorDriver, task: TaskInfo) -> None:
        """Start a task (return promptly; report RUNNING and the end through ``driver``)."""

    async def kill(self, driver: ExecutorDriver, task_id: str, grace_seconds: float) -> None:
        """Stop a task within ``grace_seconds``; report KILLED."""

    async def framework_message(self, driver: ExecutorDriver, data: str) -> None:
        """Data the framework's scheduler sent this executor."""

    async def shutdown(self, driver: ExecutorDriver) -> None:
        """Kill whatever still runs; the executor exits afterwards."""


async def run_executor(executor: Executor, environ: Mapping[str, str] | None = None) -> None:
    """Connect to the agent named in the environment and serve ``executor`` until it is shut down."""
    env = os.environ if environ is None else environ
    agent_id, framework_id, executor_id = (
        env["MESETA_AGENT_ID"],
        env["MESETA_FRAMEWORK_ID"],
        env["MESETA_EXECUTOR_ID"],
    )
    bus = Bus(env["MESETA_AMQP_URL"], "executor")
    await bus.connect()
    driver = ExecutorDriver(bus, agent_id, framework_id, executor_id)
    key = wire.executor_key(agent_id, framework_id, executor_id)
    # The master declared it at the launch; declared here too (the same way) where this principal may.
    queue = await bus.declare_queue(
        wire.executor_queue(key),
        wire.Exchange.LAUNCHES,
        key,
        durable=False,
        expires_ms=wire.EXECUTOR_QUEUE_EXPIRES_MS,
    )

    async def handle(message: wire.Message, _: AbstractIncomingMessage) -> None:
        match message:
            case wire.RunTask():
                await executor.launch(driver, message.task)
            case wire.KillExecutorTask():
                await executor.kill(driver, message.task_id, message.grace_seconds)
            case wire.ExecutorMessage():
                await executor.framework_message(driver, message.data)
            case wire.ShutdownExecutor():
                await executor.shutdown(driver)
                driver.stop()

    identity = bus.identity

    def from_agent(message: wire.Message, user: str | None) -> str | None:
        """Only this executor's agent commands it (outside development mode)."""
        return (
            None
            if identity is None
            else wire.refusal(message.type, user, identity.principals.agent(agent_id))
        )

    bus.consume(queue, wire.EXECUTOR, handle, authorize=from_agent)
    registered = wire.ExecutorRegistered(
        agent_id=agent_id, framework_id=framework_id, executor_id=executor_id
    )
    await bus.publish(wire.Exchange.LAUNCHES, agent_id, registered)
    await executor.registered(driver)
    try:
        await driver.stopped.wait()
    finally:
        await bus.close()


class CommandExecutor(Executor):
    """Runs each task's command as a subprocess; the executor's container is shared by all of them."""

    def __init__(self) -> None:
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.killed: set[str] = set()
        self._watchers: set[asyncio.Task[None]] = set()

    async def launch(self, driver: ExecutorDriver, task: TaskInfo) -> None:
        argv = task.container.argv()
        if not argv:
            await driver.send_status(
                task.task_id,
                TaskState.ERROR,
                reason=StatusReason.INVALID_TASK,
                message="a command executor task needs a command",
            )
            return
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env={**os.environ, **task.container.env},
                cwd=task.container.working_dir,
                start_new_session=True,
            )
        except OSError as exc:
            await driver.send_status(
                task.task_id, TaskState.FAILED, reason=StatusReason.CONTAINER_LAUNCH_FAILED, message=str(exc)
            )
            return
        self.processes[task.task_id] = process
        await driver.send_status(task.task_id, TaskState.RUNNING, message=f"pid {process.pid}")
        watcher = asyncio.create_task(self._watch(driver, task.task_id, process))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, driver: ExecutorDriver, task_id: str, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        self.processes.pop(task_id, None)
        if task_id in self.killed:
            await driver.send_status(
                task_id, TaskState.KILLED, reason=StatusReason.KILLED_BY_FRAMEWORK, exit_code=code
            )
        elif code == 0:
            await driver.send_status(
                task_id, TaskState.FINISHED, reason=StatusReason.CONTAINER_EXITED, exit_code=0
            )
        else:
            await driver.send_status(
                task_id,
                TaskState.FAILED,
                reason=StatusReason.CONTAINER_EXITED,
                message=f"exited with code {code}",
                exit_code=code,
            )

    async def kill(self, driver: ExecutorDriver, task_id: str, grace_seconds: float) -> None:
        process = self.processes.get(task_id)
        if process is None:
            return
        self.killed.add(task_id)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), grace_seconds)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    async def shutdown(self, driver: ExecutorDriver) -> None:
        for task_id in list(self.processes):
            await self.kill(driver, task_id, 1.0)
        await asyncio.gather(*self._watchers, return_exceptions=True)


def main() -> None:
    """Entry point of ``python -m meseta.sdk.executor``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s executor %(levelname)s %(message)s")
    eventloop.run(run_executor(CommandExecutor()))


if __name__ == "__main__":
    main()
