"""Operators' calls over the bus: a task's logs, and a kill on an operator's word. Both answer the
caller's private queue."""

from __future__ import annotations

from meseta.master.cluster import TaskEntry, TaskKey
from meseta.master.core import Call, MasterCore
from meseta.sdk import wire
from meseta.sdk.wire import ErrorCode


async def get_logs(m: MasterCore, msg: wire.GetLogs, ctx: Call) -> None:
    """Route a log request to the agent that runs (or ran) the task; it answers the asker directly."""
    if not ctx.reply_to:
        raise ValueError("GET_LOGS needs an AMQP reply_to queue for its answer")
    keys = [k for k in (*m.cluster.tasks, *m.cluster.finished) if k[1] == msg.task_id]
    keys = [k for k in dict.fromkeys(keys) if msg.framework_id in (None, k[0])]
    if len(keys) != 1:
        code, text = (
            (ErrorCode.UNKNOWN_TASK, f"no task {msg.task_id} is known to the master")
            if not keys
            else (ErrorCode.INVALID_CALL, f"task id {msg.task_id} is used by several frameworks: name one")
        )
        error = wire.Error(
            framework_id=msg.framework_id or "", code=code, message=text, correlation_id=msg.message_id
        )
        await m.outbox.to_caller(ctx.reply_to, error)
        return
    framework_id, task_id = keys[0]
    task = m.cluster.tasks.get(keys[0])
    agent_id = task.agent_id if task is not None else m.cluster.finished[keys[0]]
    fetch = wire.FetchLogs(
        agent_id=agent_id,
        framework_id=framework_id,
        task_id=task_id,
        reply_to=ctx.reply_to,
        tail_bytes=msg.tail_bytes,
        correlation_id=msg.message_id,
    )
    await m.outbox.to_agent(agent_id, fetch)


async def operator_kill(m: MasterCore, msg: wire.OperatorKill, ctx: Call) -> None:
    """Kill a live task on an operator's word; the asker hears KILLING or why not."""
    if not ctx.reply_to:
        raise ValueError("OPERATOR_KILL needs an AMQP reply_to queue for its answer")
    keys = live_task_keys(m, msg.task_id, msg.framework_id)
    answer: wire.Message
    if len(keys) != 1:
        answer = wire.Error(
            framework_id=msg.framework_id or "",
            code=ErrorCode.UNKNOWN_TASK if not keys else ErrorCode.INVALID_CALL,
            message=f"no live task {msg.task_id}"
            if not keys
            else f"task id {msg.task_id} is used by several frameworks: name one",
            correlation_id=msg.message_id,
        )
    else:
        task = await kill_as_operator(m, keys[0])
        answer = wire.Killing(
            framework_id=task.framework_id,
            task_id=task.task_id,
            agent_id=task.agent_id,
            correlation_id=msg.message_id,
        )
    await m.outbox.to_caller(ctx.reply_to, answer)


def live_task_keys(m: MasterCore, task_id: str, framework_id: str | None) -> list[TaskKey]:
    """The live tasks with this id (of this framework, where named): one, none, or several frameworks'."""
    return [k for k in m.cluster.tasks if k[1] == task_id and framework_id in (None, k[0])]


async def kill_as_operator(m: MasterCore, key: TaskKey) -> TaskEntry:
    """Kill a live task on an operator's word (over the bus or the operator API): KILLING now, and its
    framework hears KILLED with reason KILLED_BY_OPERATOR."""
    task = m.cluster.tasks[key]
    task.state = wire.TaskState.KILLING
    await m.outbox.kill_on(
        task.agent_id, task.framework_id, task.task_id, wire.StatusReason.KILLED_BY_OPERATOR
    )
    return task
