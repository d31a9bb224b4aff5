"""A message larger than any receiver reads is refused by its sender, and the sender's channel lives on.

The broker closes the channel of a publish over its own bound (2 MiB here): a master's 2.9 MB state sync
at 21,000 agents took the master's publish channel down, and the master stopped.
"""

from __future__ import annotations

import asyncio

import pytest

from meseta.sdk import wire
from meseta.sdk.bus import Bus, Oversized
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.e2e


async def test_an_oversized_message_is_refused_before_the_broker_and_the_bus_goes_on(amqp_url: str) -> None:
    sender, receiver = Bus(amqp_url, "sender"), Bus(amqp_url, "receiver")
    await sender.connect()
    await receiver.connect()
    try:
        queue = await receiver.declare_queue("after-oversized", wire.Exchange.HEARTBEATS, "after")
        got: list[str] = []

        async def record(message: wire.Message, _: object) -> None:
            got.append(message.agent_id)  # type: ignore[attr-defined]

        receiver.consume(queue, wire.HEARTBEATS, record)
        huge = wire.AgentAdded(
            agent_id="a-huge",
            hostname="h",
            attributes={f"k{i}": "x" * 100 for i in range(30_000)},  # 3.3 MB encoded
            total=wire.Resources(cpus=1),
            available=wire.Resources(cpus=1),
        )
        with pytest.raises(Oversized, match=r"AGENT_ADDED of 3[0-9]{6} bytes not sent"):
            await asyncio.wait_for(sender.publish(wire.Exchange.HEARTBEATS, "after", huge), 30)
        beat = wire.Heartbeat(agent_id="a-after", free=wire.Resources(cpus=1))
        await asyncio.wait_for(sender.publish(wire.Exchange.HEARTBEATS, "after", beat), 30)
        await wait_for(lambda: got == ["a-after"], 30, "the heartbeat sent after the refusal")
        assert sender.reconnects == 0
    finally:
        await sender.close()
        await receiver.close()
