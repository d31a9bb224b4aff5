"""The bus on a real broker: what a publish does once the bus is closed."""

from __future__ import annotations

import asyncio

import pytest

from meseta.sdk import wire
from meseta.sdk.bus import Bus, BusClosed


async def test_a_publish_after_close_fails_at_once(amqp_url: str) -> None:
    # aio-pika's robust channel waits for its connection to come back, for ever once it was closed: an
    # agent draining its updates onto a shared, closed bus hung the benchmark emulator's shut-down.
    bus = Bus(amqp_url, "agent")
    await bus.connect()
    await bus.publish(
        wire.Exchange.HEARTBEATS,
        wire.RoutingKey.HEARTBEAT,
        wire.Heartbeat(agent_id="a1", free=wire.Resources(cpus=1)),
    )
    await bus.close()
    with pytest.raises(BusClosed, match="closed"):
        await asyncio.wait_for(
            bus.publish(
                wire.Exchange.HEARTBEATS,
                wire.RoutingKey.HEARTBEAT,
                wire.Heartbeat(agent_id="a1", free=wire.Resources(cpus=1)),
            ),
            5,
        )
