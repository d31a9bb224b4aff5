"""The test cluster's own helpers: a helper that leaks between tests fails tests far from the cause."""

from __future__ import annotations

import gc

import pytest

from meseta.sdk import FrameworkClient, wire
from meseta.testing.local import _BACKLOG, next_event

UNUSED_URL = "amqp://guest:guest@127.0.0.1:5672/never-connected"


async def test_a_collected_clients_unread_events_never_reach_a_later_client() -> None:
    gc.collect()
    before = len(_BACKLOG)
    first = FrameworkClient(UNUSED_URL, "first")
    # An event nobody asked for yet is kept for a later call, then the stream ends.
    first._events.put_nowait(wire.OffersSuppressed(framework_id="fw-first"))
    first._events.put_nowait(None)
    with pytest.raises(AssertionError, match="closed"):
        await next_event(first, wire.Update, timeout=1)
    assert len(_BACKLOG) == before + 1

    del first
    gc.collect()
    assert len(_BACKLOG) == before  # the backlog went with its client
    # CPython reuses a collected object's address, so the next client often has the same id().
    second = FrameworkClient(UNUSED_URL, "second")
    with pytest.raises(TimeoutError):
        await next_event(second, wire.OffersSuppressed, timeout=0.2)
