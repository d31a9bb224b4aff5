"""What every service reports about its process: event-loop lag and garbage-collector pauses.

The loop lag is measured per service (a short sleep that wakes late: everything on that loop waited as
long); GC pauses are the process's, timed by one ``gc.callbacks`` hook installed the first time a
service asks (several services of one process, as in tests, share it).
"""

from __future__ import annotations

import asyncio
import gc
import time
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
    """How late a sleep of ``interval`` wakes, measured for as long as :meth:`run` runs."""

    def __init__(self, interval: float = LAG_INTERVAL) -> None:
        self.interval = interval
        self.lag = Histogram()
        self.last = 0.0
        """The latest lag, seconds."""

    async def run(self) -> None:
        while True:
            began = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.last = max(0.0, time.perf_counter() - began - self.interval)
            self.lag.observe(self.last)
