"""The batcher: order and sizes of batches, and the trace context each batch is sent in."""

from __future__ import annotations

import asyncio

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from meseta.sdk.batching import Batcher

TRACER = TracerProvider().get_tracer("test")


class Sent:
    """What the flush saw: each batch, and the trace id current while it was sent (0: none)."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.trace_ids: list[int] = []

    async def __call__(self, batch: list[str]) -> None:
        self.batches.append(batch)
        self.trace_ids.append(trace.get_current_span().get_span_context().trace_id)


def add_in_own_trace(batcher: Batcher[str], item: str) -> int:
    with TRACER.start_as_current_span(item) as span:
        batcher.add(item)
        return span.get_span_context().trace_id


async def test_a_burst_leaves_in_order_in_batches_of_at_most_max_items() -> None:
    sent = Sent()
    batcher: Batcher[str] = Batcher(sent, linger=0.01, max_items=3)
    for i in range(7):
        batcher.add(f"i{i}")
    await batcher.drain()
    assert sent.batches == [["i0", "i1", "i2"], ["i3", "i4", "i5"], ["i6"]]
    assert (batcher.batches, batcher.items) == (3, 7)


async def test_a_lone_item_is_sent_in_its_own_trace() -> None:
    sent = Sent()
    batcher: Batcher[str] = Batcher(sent, linger=0.01)
    # The first item starts the sending task; a later lone item must not be sent in the first one's trace.
    first = add_in_own_trace(batcher, "first")
    await batcher.drain()
    second = add_in_own_trace(batcher, "second")
    await batcher.drain()
    assert sent.batches == [["first"], ["second"]]
    assert sent.trace_ids == [first, second]


async def test_a_lone_item_added_while_a_batch_is_sending_keeps_its_trace() -> None:
    release = asyncio.Event()
    sent = Sent()

    async def slow(batch: list[str]) -> None:
        await sent(batch)
        await release.wait()

    batcher: Batcher[str] = Batcher(slow, linger=0.0, max_items=1)
    first = add_in_own_trace(batcher, "first")
    await asyncio.sleep(0)  # the sending task starts, in the first item's context, and waits in flush
    await asyncio.sleep(0)
    second = add_in_own_trace(batcher, "second")  # sent later by the same task
    release.set()
    await batcher.drain()
    assert sent.batches == [["first"], ["second"]]
    assert sent.trace_ids == [first, second]


async def test_a_batch_of_several_is_sent_in_no_trace() -> None:
    sent = Sent()
    batcher: Batcher[str] = Batcher(sent, linger=0.01)
    add_in_own_trace(batcher, "a")
    add_in_own_trace(batcher, "b")
    await batcher.drain()
    assert sent.batches == [["a", "b"]]
    assert sent.trace_ids == [0]
