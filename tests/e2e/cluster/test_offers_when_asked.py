"""The allocator gathers events for ``batch_window`` before a cycle; a revive ends the wait, once a window."""

from __future__ import annotations

import time

import pytest

from meseta.sdk import wire
from meseta.testing.local import local_cluster, next_event

pytestmark = pytest.mark.e2e

WINDOW = 1.5  # long enough that waiting it out cannot pass for "at once"


async def test_a_revive_is_allocated_for_at_once_once_a_window_returned_resources_wait_it(
    amqp_url: str, etcd_prefix: str
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1, batch_window=WINDOW) as cluster:
        client = await cluster.framework("asker")
        offers: wire.Offers = await next_event(client, wire.Offers)
        # Given back, unfiltered: the allocator gathers from here for the window. The framework suppressed
        # first, so nothing comes of it.
        await client.suppress()
        await client.decline([o.offer_id for o in offers.offers], refuse_seconds=0)
        # A revive in the middle of that window ends it: the offer comes at once, not when it would end.
        asked = time.monotonic()
        await client.revive()
        offers = await next_event(client, wire.Offers)
        assert time.monotonic() - asked < WINDOW / 2
        # Once a window: a revive right after that one waits the window out, so a framework reviving in a
        # loop cannot make the allocator cycle at its pace.
        await client.suppress()
        await client.decline([o.offer_id for o in offers.offers], refuse_seconds=0)
        asked = time.monotonic()
        await client.revive()
        offers = await next_event(client, wire.Offers)
        assert time.monotonic() - asked >= WINDOW / 2
        # Resources given back wait the window, in case more come with them.
        declined = time.monotonic()
        await client.decline([o.offer_id for o in offers.offers], refuse_seconds=0)
        await next_event(client, wire.Offers)
        assert time.monotonic() - declined >= WINDOW * 0.9
