"""The event loop every Meseta process runs on: uvloop's, where it is installed.

Each broker hop is a few event-loop turns on either side (the AMQP client's reader, consumer and writer
tasks), and uvloop's turns and socket calls cost less than asyncio's own: a hop through Meseta's bus
between two busy processes took 0.64 ms instead of 0.71 (``bench/broker_floor.py``, three interleaved
runs each). Where processes sleep between messages the VM's wake-ups dominate and the difference was
within the noise (docs/BENCHMARKS.md). asyncio's loop is the fallback (uvloop has no Windows build), and
``MESETA_EVENT_LOOP=asyncio`` chooses it (to compare, or to rule uvloop out when chasing a bug).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
ENV = "MESETA_EVENT_LOOP"
"""``uvloop`` (the default) or ``asyncio``."""


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """A maker of the fastest event loop installed, or of asyncio's own where ``MESETA_EVENT_LOOP``
    says so."""
    choice = os.environ.get(ENV, "uvloop")
    if choice == "asyncio":
        return asyncio.new_event_loop
    if choice != "uvloop":
        raise ValueError(f"{ENV}={choice!r}: use uvloop or asyncio")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency wherever it builds
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop ``loop_factory`` makes."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
