"""Garbage-collector pauses, timed and amortized: a full collection over a large heap stops the loop.

A master holding 10,000 agents, or an emulator of 5,000, keeps millions of long-lived objects; CPython's
oldest-generation collection walks all of them and every message waits meanwhile (a 10,000-agent master
paused 175-490 ms every few seconds during its first round). The watch logs each pause over a threshold
and keeps counts, so a latency tail can be told apart from one. With ``amortize`` it also freezes what
survived a long collection (``gc.freeze``): later collections walk only objects made since. Frozen
objects are still freed by reference counting; only cycles among them wait, until the periodic thaw
(``thaw_interval``) hands everything back to the collector for one full pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

YOUNG_THRESHOLD = 10_000
"""Net allocations between young collections when amortizing (CPython's default is 700)."""


@dataclass
class GcWatch:
    """Times every collection; logs those longer than ``threshold`` seconds."""

    threshold: float = 0.05
    pauses: int = 0
    """Collections longer than the threshold."""
    longest: float = 0.0
    total: float = 0.0
    """Seconds spent collecting, all generations."""
    amortize: bool = False
    thaw_interval: float = 600.0
    """Seconds between thaws: the bound on how long cyclic garbage among frozen objects is kept."""
    freezes: int = 0
    _began: float | None = field(default=None, repr=False)
    _freeze_due: bool = field(default=False, repr=False)
    _thawed_at: float = field(default_factory=time.monotonic, repr=False)
    _thresholds: tuple[int, ...] | None = field(default=None, repr=False)

    def install(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        if self.amortize:
            # Young collections every 700 net allocations made a busy master start a full one every few
            # seconds; every 10,000, a young collection still walks at most that many objects (~1 ms).
            self._thresholds = gc.get_threshold()
            gc.set_threshold(YOUNG_THRESHOLD, *self._thresholds[1:])
        return self

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        if self._began is None:
            return
        took, self._began = time.perf_counter() - self._began, None
        self.total += took
        self.longest = max(self.longest, took)
        if took >= self.threshold:
            self.pauses += 1
            # Not here: the collector has not finished; the next tick freezes.
            self._freeze_due = self.amortize and info.get("generation") == 2
            log.warning(
                "garbage collection of generation %d took %.0f ms (%d objects collected)",
                info.get("generation", -1),
                took * 1e3,
                info.get("collected", 0),
            )

    def tick(self) -> None:
        """Freeze after a long full collection; thaw every ``thaw_interval`` (call every second or so)."""
        if not self.amortize:
            return
        if time.monotonic() - self._thawed_at >= self.thaw_interval:
            gc.unfreeze()
            self._thawed_at = time.monotonic()
        elif self._freeze_due:
            gc.freeze()
            self.freezes += 1
        self._freeze_due = False

    async def run(self, interval: float = 1.0) -> None:
        """``tick`` on the event loop until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.tick()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[GcWatch]:
        """Installed and ticking on the running loop for the block; removed after it."""
        self.install()
        ticking = asyncio.create_task(self.run(), name="gc-watch")
        try:
            yield self
        finally:
            ticking.cancel()
            self.remove()

    def summary(self) -> str:
        return (
            f"garbage collection: {self.total:.1f} s in all, longest {self.longest * 1e3:.0f} ms, "
            f"{self.pauses} pauses over {self.threshold * 1e3:.0f} ms, {self.freezes} freezes"
        )


def freeze_survivors() -> None:
    """Move every object alive now out of the collector's reach (``gc.freeze``).

    For a process whose bulk is built once at start (an emulator's agents, a master's first registrations):
    full collections then walk only what was made since.
    """
    gc.collect()
    gc.freeze()
