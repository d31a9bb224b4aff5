"""Start a coroutine at once, in the caller's step, and let a task run the rest (Python 3.12's eager tasks).

A publish made inside a message handler used to be a new task: its frames reached the connection's
writer only after the handler, its span and any other ready handler had run. Started eagerly, the
frames are queued for the writer before the handler goes on (the AMQP client queues them before its
first real wait, the broker's confirm), and only the wait for the confirm is left to a task.

On Python 3.11 the first step runs as the new task through asyncio's private ``_enter_task`` and
``_leave_task`` (what 3.12's eager start does inside asyncio); on 3.12 and later asyncio's own is used.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


def start(coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """Run ``coro`` until it first waits, now; a task that runs the rest.

    As a task's, its first step runs in a copy of the current context and with the task as the current
    one (``asyncio.current_task()``, which ``asyncio.timeout`` cancels), and what it raises goes to the
    task.
    """
    if sys.version_info >= (3, 12):  # pragma: no cover - the machines here run 3.11
        return asyncio.Task(coro, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    first: list[Any] = []
    """What the first step gave: ("yield", value), ("return", value) or ("raise", exception)."""

    async def rest() -> T:
        # Runs only after a first step that yielded: a coroutine done in it gets a finished future,
        # and this task is cancelled before its first turn.
        return await _resume(coro, first[0][1])

    def close_if_never_resumed(task: asyncio.Future[T]) -> None:
        # Cancelled before its first turn, the task never entered ``rest``: the coroutine still waits
        # where it stopped. Closing it runs its ``finally`` clauses (a lock held is released).
        if task.cancelled() and first and first[0][0] == "yield":
            coro.close()

    # The task exists before the first step runs, so the step runs as it (3.12's eager start does the
    # same); its own first turn, later, continues from where the step stopped.
    task = loop.create_task(rest(), context=context)
    task.add_done_callback(close_if_never_resumed)
    caller = asyncio.current_task(loop)
    if caller is not None:
        asyncio.tasks._leave_task(loop, caller)
    asyncio.tasks._enter_task(loop, task)
    try:
        first.append(("yield", context.run(coro.send, None)))
    except StopIteration as stopped:
        first.append(("return", stopped.value))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        first.append(("raise", exc))
    finally:
        asyncio.tasks._leave_task(loop, task)
        if caller is not None:
            asyncio.tasks._enter_task(loop, caller)
    kind, value = first[0]
    if kind == "yield":
        return task
    # Done in its first step, as an eager task is: a finished future, and the task is not needed.
    task.cancel()
    finished: asyncio.Future[T] = loop.create_future()
    if kind == "return":
        finished.set_result(value)
    elif isinstance(value, asyncio.CancelledError):
        finished.cancel()
    else:
        finished.set_exception(value)
    return finished


@types.coroutine
def _resume(coro: Coroutine[Any, Any, T], yielded: Any) -> Generator[Any, Any, T]:
    """``yield from coro``, for a coroutine already started and waiting on ``yielded``."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
