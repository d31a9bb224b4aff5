"""The lifecycle every service shares: ``start()``, idempotent ``stop()``, ``run()``, ``async with``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

from meseta.runtime.process_stats import LoopLag

log = logging.getLogger(__name__)


class Service:
    """Base class: subclasses implement ``_start`` and ``_stop`` and spawn loops with :meth:`spawn`.

    ``run()`` returns when ``stop()`` is called and re-raises the first error of any spawned loop, so
    a dead loop never leaves a service half alive.
    """

    name = "service"

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopped = asyncio.Event()
        self._failure: BaseException | None = None
        self._started = False
        self._stopping = False
        self.lag = LoopLag()
        """The event loop's lag probe, shared with every service on the loop once this one starts."""
        self._lag_held = False

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run a loop of this service; its failure stops the service."""
        task = asyncio.create_task(coro, name=f"{self.name}:{name}")
        task.add_done_callback(self._on_task_done)
        self._tasks.append(task)
        return task

    def _on_task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or self._stopping:
            return
        exc = task.exception()
        if exc is not None and self._failure is None:
            log.error("%s: %s failed", self.name, task.get_name(), exc_info=exc)
            self._failure = exc
            self._stopped.set()

    async def start(self) -> None:
        """Connect and begin serving."""
        if self._started:
            return
        self._started = True
        self.lag = LoopLag.of_this_loop()
        self.lag.acquire()
        self._lag_held = True
        await self._start()

    async def stop(self) -> None:
        """Stop loops, then close clients. Safe to call twice."""
        if self._stopping:
            return
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        try:
            await self._stop()
        finally:
            if self._lag_held:
                self._lag_held = False
                self.lag.release()
        self._stopped.set()

    async def run(self) -> None:
        """Start, serve until stopped, re-raise the first fatal error."""
        await self.start()
        try:
            await self._stopped.wait()
        finally:
            await self.stop()
        if self._failure is not None:
            raise self._failure

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
