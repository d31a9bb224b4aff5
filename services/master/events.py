"""The operators' event stream: agents added, removed, draining and back, frameworks added and removed,
tasks changing state, as the leading master sees them (served as server-sent events on
``/api/v1/events`` by meseta.master.api).

Each subscriber has a bounded queue: one that falls behind by ``QUEUE_LIMIT`` events is told so (an
``OVERFLOW`` event) and dropped, rather than holding the master's memory; it reconnects and reads the
state API for what it missed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000
OVERFLOW = "OVERFLOW"

Event = dict[str, Any]


class EventHub:
    """Fans each event out to every subscriber; costs nothing without one."""

    def __init__(self, limit: int = QUEUE_LIMIT) -> None:
        self.limit = limit
        self._subscribers: set[asyncio.Queue[Event]] = set()

    def emit(self, kind: str, **fields: Any) -> None:
        if not self._subscribers:
            return
        event: Event = {"type": kind, "time": time.time(), **fields}
        for queue in list(self._subscribers):
            if queue.qsize() >= self.limit - 1:
                # The last place is the overflow notice; the subscriber is let go.
                queue.put_nowait({"type": OVERFLOW, "time": event["time"]})
                self._subscribers.discard(queue)
                log.warning("an event stream subscriber fell %d events behind: dropped", self.limit)
            else:
                queue.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(self.limit)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
