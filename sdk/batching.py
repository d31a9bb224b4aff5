"""Coalesce many small messages into one: under load, one AMQP message carries what is pending.

A lone item leaves after ``linger`` seconds at most; a burst leaves as one batch (or several of at most
``max_items``). Each AMQP message costs the receiving Python service a few hundred microseconds however
small it is, so batches are what lets the master keep up with thousands of agents.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Batcher(Generic[T]):
    """Collects items; ``flush`` sends each batch, in order, one batch at a time."""

    def __init__(
        self, flush: Callable[[list[T]], Awaitable[None]], linger: float = 0.002, max_items: int = 128
    ) -> None:
        self._flush = flush
        self.linger = linger
        self.max_items = max_items
        self._items: list[T] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    def add(self, item: T) -> None:
        self._items.append(item)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="batcher")

    async def _run(self) -> None:
        await asyncio.sleep(self.linger)
        while self._items:
            batch, self._items = self._items[: self.max_items], self._items[self.max_items :]
            self.batches += 1
            self.items += len(batch)
            try:
                await self._flush(batch)
            except Exception:
                # The sender's own retries (acknowledgement timeouts, resends) cover a lost batch.
                log.exception("sending a batch of %d failed", len(batch))

    async def drain(self) -> None:
        """Send what is pending now, and wait until it is sent."""
        if self._task is not None and not self._task.done():
            await self._task  # at most ``linger`` away from sending
        while self._items:
            batch, self._items = self._items[: self.max_items], self._items[self.max_items :]
            await self._flush(batch)
