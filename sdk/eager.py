"""Start a coroutine at once, in the caller's step, and let a task run the rest (Python 3.12's eager tasks).

A publish made inside a message handler used to be a new task: its frames reached the connection's
writer only after the handler, its span and any other ready handler had run. Started eagerly, the
frames are queued for the writer before the handler goes on (the AMQP client queues them before its
first real wait, the broker's confirm), and only the wait for the confirm is left to a task.
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
    """Run ``coro`` until it first waits, now; a future of its result (a task when it had to wait).

    Like a task, it runs in a copy of the current context, and what it raises goes to the future.
    """
    if sys.version_info >= (3, 12):  # pragma: no cover - the machines here run 3.11
        return asyncio.Task(coro, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    try:
        yielded = context.run(coro.send, None)
    except StopIteration as done:
        future: asyncio.Future[T] = loop.create_future()
        future.set_result(done.value)
        return future
    except asyncio.CancelledError:
        future = loop.create_future()
        future.cancel()
        return future
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        future = loop.create_future()
        future.set_exception(exc)
        return future
    resumed = False

    async def rest() -> T:
        nonlocal resumed
        resumed = True
        return await _resume(coro, yielded)

    def close_if_never_resumed(_: asyncio.Future[T]) -> None:
        # Cancelled before its first step, the task never entered ``rest``: the coroutine still waits
        # where it stopped. Closing it runs its ``finally`` clauses (a lock held is released).
        if not resumed:
            coro.close()

    task = loop.create_task(rest(), context=context)
    task.add_done_callback(close_if_never_resumed)
    return task


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
