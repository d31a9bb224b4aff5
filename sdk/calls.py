"""Calls answered on a private reply queue: an operator's (a task's logs, a kill), and the helper the
client's SUBSCRIBE uses too."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from aio_pika.abc import AbstractQueue

from meseta.sdk import wire
from meseta.sdk.bus import Bus


async def first_answer(replies: AbstractQueue, wait: float) -> wire.Message | None:
    """The first message on the reply queue within ``wait`` seconds, or None."""
    try:
        async with asyncio.timeout(wait), replies.iterator() as answers:
            async for incoming in answers:
                await incoming.ack()
                return wire.decode(incoming.body, wire.REPLIES)
    except TimeoutError:
        pass
    return None


class LogsUnavailable(RuntimeError):
    """A task's output could not be had (unknown task, or past its retention)."""


_Answer = TypeVar("_Answer", bound=wire.Message)


async def _ask_master(
    bus: Bus,
    call: wire.Message,
    expected: type[_Answer],
    refused: type[RuntimeError],
    task_id: str,
    timeout: float,
) -> _Answer:
    """Send an operator's call with a private reply queue; the answer, or ``refused`` saying why not."""
    replies = await bus.reply_queue()
    await bus.publish(wire.Exchange.CALLS, wire.RoutingKey.CALL, call, reply_to=replies.name)
    answer = await first_answer(replies, timeout)
    await replies.delete(if_unused=False, if_empty=False)
    if isinstance(answer, expected):
        return answer
    if isinstance(answer, wire.Error):
        raise refused(f"{answer.code}: {answer.message}")
    raise refused(f"no answer about task {task_id} within {timeout} s")


async def fetch_logs(
    bus: Bus, task_id: str, framework_id: str | None = None, tail_bytes: int = 65536, timeout: float = 10.0
) -> wire.TaskLogs:
    """A task's stdout and stderr, through the master, from the agent that ran it.

    Raises:
        LogsUnavailable: the master or the agent said why not, or nobody answered in time.
    """
    call = wire.GetLogs(task_id=task_id, framework_id=framework_id, tail_bytes=tail_bytes)
    return await _ask_master(bus, call, wire.TaskLogs, LogsUnavailable, task_id, timeout)


class KillRefused(RuntimeError):
    """The master would not kill the task, or did not answer."""


async def operator_kill(
    bus: Bus, task_id: str, framework_id: str | None = None, timeout: float = 10.0
) -> wire.Killing:
    """Kill a task as an operator (no framework secret): the master tells the task's agent to kill it.

    Raises:
        KillRefused: the master said why not (unknown or ambiguous task), or did not answer in time.
    """
    call = wire.OperatorKill(task_id=task_id, framework_id=framework_id)
    return await _ask_master(bus, call, wire.Killing, KillRefused, task_id, timeout)
