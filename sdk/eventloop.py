"""The event loop every Meseta process runs on: uvloop's, where it is installed.

Each offer cycle crosses four broker hops, and each hop is a few event-loop turns on either side (the
AMQP client's reader, consumer and writer tasks). uvloop's turns and socket calls cost less than
asyncio's own: at 1,000 agents an offer's round trip fell by about a tenth and the master's CPU by a
fifth (docs/BENCHMARKS.md). asyncio's loop is kept as the fallback (uvloop has no Windows build).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """A maker of the fastest event loop installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency wherever it builds
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop ``loop_factory`` makes."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
