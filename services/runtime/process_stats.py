"""What every service reports about its process: event-loop lag and garbage-collector pauses.

The loop lag is measured per service (a short sleep that wakes late: everything on that loop waited as
long); GC pauses are the process's, timed by one ``gc.callbacks`` hook installed the first time a
service asks (several services of one process, as in tests, share it).
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from typing import Any

from meseta.sdk.histogram import Histogram

LAG_INTERVAL = 0.25
"""Seconds between loop-lag probes."""

GC_PAUSES = Histogram()
"""This process's collections, seconds each (every generation)."""
_gc_began: float | None = None


def _on_gc(phase: str, _: dict[str, Any]) -> None:
    global _gc_began
    if phase == "start":
        _gc_began = time.perf_counter()
    elif _gc_began is not None:
        GC_PAUSES.observe(time.perf_counter() - _gc_began)
        _gc_began = None


def watch_gc() -> Histogram:
    """Time this process's collections from now on (once per process); the histogram they go to."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)
    return GC_PAUSES


class LoopLag:
    """How late a sleep of ``interval`` wakes on one event loop. One probe per loop, shared by every
    service on it (an agent emulator runs hundreds of agents on one loop: a probe each woke it 2,000
    times a second): :meth:`acquire` at a service's start, :meth:`release` at its stop."""

    _shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopLag] = weakref.WeakKeyDictionary()

    def __init__(self, interval: float = LAG_INTERVAL) -> None:
        self.interval = interval
        self.lag = Histogram()
        self.last = 0.0
        """The latest lag, seconds."""
        self._users = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of_this_loop(cls) -> LoopLag:
        """The probe of the running loop (made the first time)."""
        loop = asyncio.get_running_loop()
        probe = cls._shared.get(loop)
        if probe is None:
            probe = cls._shared[loop] = cls()
        return probe

    def acquire(self) -> None:
        self._users += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    def release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            began = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.last = max(0.0, time.perf_counter() - began - self.interval)
            self.lag.observe(self.last)
