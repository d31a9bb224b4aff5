"""Coalesce many small messages into one: under load, one AMQP message carries what is pending.

A lone item leaves after ``linger`` seconds at most; a burst leaves as one batch (or several of at most
``max_items``). Each AMQP message costs the receiving Python service a few hundred microseconds however
small it is, so batches are what lets the master keep up with thousands of agents.

A batch of one is sent in its item's trace context (the one current when it was added); a batch of
several in none, as it belongs to no single trace: items that need their own carry it in the message.
Without this, a batch was sent in the context of whichever item started the sending task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from opentelemetry import context as otel_context

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
        self._contexts: list[otel_context.Context] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    def add(self, item: T, context: otel_context.Context | None = None) -> None:
        """Queue ``item``; alone in its batch it is sent in ``context`` (default: the current one)."""
        self._items.append(item)
        self._contexts.append(otel_context.get_current() if context is None else context)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="batcher")

    async def _run(self) -> None:
        await asyncio.sleep(self.linger)
        while self._items:
            batch = self._take()
            self.batches += 1
            self.items += len(batch)
            try:
                await self._send(batch)
            except Exception:
                # The sender's own retries (acknowledgement timeouts, resends) cover a lost batch.
                log.exception("sending a batch of %d failed", len(batch))

    async def drain(self) -> None:
        """Send what is pending now, and wait until it is sent."""
        if self._task is not None and not self._task.done():
            await self._task  # at most ``linger`` away from sending
        while self._items:
            await self._send(self._take())

    def _take(self) -> list[tuple[T, otel_context.Context]]:
        n = self.max_items
        batch = list(zip(self._items[:n], self._contexts[:n], strict=True))
        del self._items[:n], self._contexts[:n]
        return batch

    async def _send(self, batch: list[tuple[T, otel_context.Context]]) -> None:
        context = batch[0][1] if len(batch) == 1 else otel_context.Context()
        token = otel_context.attach(context)
        try:
            await self._flush([item for item, _ in batch])
        finally:
            otel_context.detach(token)
