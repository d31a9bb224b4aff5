"""What the agent does with each message on its queue: one table, checked against the LAUNCHES channel."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aio_pika.abc import AbstractIncomingMessage

from meseta.runtime.dispatch import check_coverage
from meseta.sdk import wire

if TYPE_CHECKING:
    from meseta.agent.service import AgentService

Handler = Callable[["AgentService", Any], Awaitable[None]]


async def _launch(agent: AgentService, msg: wire.LaunchTasks) -> None:
    await agent.runner.launch(msg)
    agent.read_to(msg.mark)  # after: a heartbeat that says read here lists these tasks


async def _mark(agent: AgentService, msg: wire.MarkLaunches) -> None:
    agent.read_to(msg.mark)


async def _kill(agent: AgentService, msg: wire.KillTask) -> None:
    await agent.runner.kill(msg)


async def _acknowledged(agent: AgentService, msg: wire.AcknowledgeUpdates) -> None:
    agent.updates.acknowledged(msg.uuids, msg.framework_id)


async def _reregister(agent: AgentService, msg: wire.ReregisterAgent) -> None:
    await agent.register()


async def _interval(agent: AgentService, msg: wire.HeartbeatInterval) -> None:
    agent.told(msg.seconds)


async def _logs(agent: AgentService, msg: wire.FetchLogs) -> None:
    # Straight to the asker's private queue: the master only routed the request here.
    await agent.bus.publish("", msg.reply_to, await agent.runner.logs_answer(msg))


async def _executor_registered(agent: AgentService, msg: wire.ExecutorRegistered) -> None:
    agent.runner.executors.registered(msg)


async def _executor_update(agent: AgentService, msg: wire.ExecutorUpdate) -> None:
    await agent.runner.executors.update(msg)


async def _executor_message(agent: AgentService, msg: wire.ExecutorMessage) -> None:
    await agent.runner.executors.forward(msg)


HANDLERS: Mapping[type[wire.Message], Handler] = {
    wire.LaunchTasks: _launch,
    wire.MarkLaunches: _mark,
    wire.KillTask: _kill,
    wire.AcknowledgeUpdates: _acknowledged,
    wire.ReregisterAgent: _reregister,
    wire.HeartbeatInterval: _interval,
    wire.FetchLogs: _logs,
    wire.ExecutorRegistered: _executor_registered,
    wire.ExecutorUpdate: _executor_update,
    wire.ExecutorMessage: _executor_message,
}


class AgentDispatcher:
    """Hands each message on the agent's queue to its handler."""

    def __init__(self, agent: AgentService) -> None:
        check_coverage("agent", HANDLERS, (wire.LAUNCHES,))
        self.agent = agent

    async def handle(self, message: wire.Message, _: AbstractIncomingMessage) -> None:
        await HANDLERS[type(message)](self.agent, message)
