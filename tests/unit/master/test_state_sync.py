"""The master's view goes to the allocator in parts with nothing of the master's between them."""

from __future__ import annotations

import asyncio

from meseta.master.outbox import Outbox
from meseta.sdk import wire
from meseta.sdk.wire import Resources
from tests.unit.master.fakes import RecordingPublisher

CPU4 = Resources(cpus=4, mem=4096)


async def test_no_allocator_message_goes_between_a_views_parts() -> None:
    agents = [
        wire.AgentAdded(agent_id=f"agent-{i}", hostname=f"h{i}", total=CPU4, available=CPU4) for i in range(8)
    ]
    parts = wire.state_sync_parts(agents, [], [], max_bytes=1500)
    assert len(parts) >= 3
    publisher = RecordingPublisher()
    outbox = Outbox(publisher)
    before, after = wire.OffersRevived(framework_id="fw-0"), wire.OffersSuppressed(framework_id="fw-0")
    views: list[int] = []

    def view() -> list[wire.StateSync]:
        views.append(len(publisher.sent))
        return parts

    # Each publish yields to the loop: without the lock, `after` went out between the first two parts.
    await asyncio.gather(outbox.to_allocator(before), outbox.sync_allocator(view), outbox.to_allocator(after))
    sent = [s.message for s in publisher.take()]
    assert sent == [before, *parts, after]
    assert views == [0]  # taken once, when the view began to go
