"""meseta.sdk._eager: a coroutine started in the caller's step, the rest in a task."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from meseta.sdk import _eager as eager

LABEL: contextvars.ContextVar[str] = contextvars.ContextVar("label", default="caller")


async def test_it_runs_until_its_first_wait_before_start_returns() -> None:
    steps: list[str] = []
    gate = asyncio.Event()

    async def work() -> int:
        steps.append("before the wait")
        await gate.wait()
        steps.append("after the wait")
        return 7

    future = eager.start(work())
    assert steps == ["before the wait"]  # already run, with no turn of the loop
    gate.set()
    assert await future == 7
    assert steps == ["before the wait", "after the wait"]


async def test_one_that_never_waits_is_done_at_once() -> None:
    async def quick() -> str:
        return "done"

    future = eager.start(quick())
    assert future.done()
    assert await future == "done"


async def test_what_it_raises_goes_to_the_future_before_and_after_a_wait() -> None:
    async def at_once() -> None:
        raise ValueError("at once")

    async def later() -> None:
        await asyncio.sleep(0)
        raise KeyError("later")

    first, second = eager.start(at_once()), eager.start(later())
    with pytest.raises(ValueError, match="at once"):
        await first
    with pytest.raises(KeyError, match="later"):
        await second


async def test_cancelling_it_cancels_the_coroutine_where_it_waits() -> None:
    cleaned = asyncio.Event()

    async def waits_for_ever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    future = eager.start(waits_for_ever())
    future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await future
    assert cleaned.is_set()


async def test_it_runs_in_a_copy_of_the_callers_context() -> None:
    LABEL.set("caller")
    seen: list[str] = []

    async def work() -> None:
        seen.append(LABEL.get())
        LABEL.set("inside")
        await asyncio.sleep(0)
        seen.append(LABEL.get())

    await eager.start(work())
    assert seen == ["caller", "inside"]
    assert LABEL.get() == "caller"  # what it set stayed in its own context


async def test_its_first_step_runs_as_its_own_task() -> None:
    # asyncio.timeout() and wait_for cancel the current task: during the first step that must be the
    # started task, not the caller (it was the caller's before: a timeout there cancelled the handler).
    caller = asyncio.current_task()
    seen: list[asyncio.Task[object] | None] = []

    async def work() -> None:
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())

    future = eager.start(work())
    assert asyncio.current_task() is caller  # the caller is current again once start returns
    await future
    assert seen[0] is future and seen[1] is future and future is not caller


async def test_a_timeout_in_the_first_step_cancels_only_the_started_task() -> None:
    async def slow() -> str:
        async with asyncio.timeout(0.01):
            await asyncio.Event().wait()
        return "never"

    future = eager.start(slow())
    with pytest.raises(TimeoutError):
        await future
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]
