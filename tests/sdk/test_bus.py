"""The bus on a real broker: what a publish does once the bus is closed."""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

import aiormq
import pytest

from meseta.sdk import wire
from meseta.sdk.bus import Bus, BusClosed, _busy


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


async def _heartbeats(bus: Bus, count: int) -> None:
    for i in range(count):
        await bus.publish(
            wire.Exchange.HEARTBEATS,
            wire.RoutingKey.HEARTBEAT,
            wire.Heartbeat(agent_id=f"a{i}", free=wire.Resources(cpus=1)),
        )


async def test_a_queue_is_handled_one_message_at_a_time_in_delivery_order(amqp_url: str) -> None:
    # Each delivery is handled in its own task now (no queue iterator): the lock must keep them in order.
    bus = Bus(amqp_url, "master")
    await bus.connect()
    try:
        queue = await bus.declare_queue("order-q", wire.Exchange.HEARTBEATS, wire.RoutingKey.HEARTBEAT)
        seen: list[str] = []
        inside = 0
        most_inside = 0
        done = asyncio.Event()

        async def handle(message: wire.Message, _: object) -> None:
            nonlocal inside, most_inside
            inside += 1
            most_inside = max(most_inside, inside)
            for _ in range(len(seen) % 3):  # give later deliveries every chance to overtake
                await asyncio.sleep(0)
            assert isinstance(message, wire.Heartbeat)
            seen.append(message.agent_id)
            inside -= 1
            if len(seen) == 60:
                done.set()

        bus.consume(queue, wire.HEARTBEATS, handle)
        await _heartbeats(bus, 60)
        await asyncio.wait_for(done.wait(), 10)
        assert seen == [f"a{i}" for i in range(60)]
        assert most_inside == 1
    finally:
        await bus.close()


async def test_a_stopped_consumer_gives_back_what_it_had_not_handled(amqp_url: str) -> None:
    # Deliveries waiting behind the one being handled go back to the queue when the consumer stops, as
    # they did from the queue iterator; the one in hand is finished and acknowledged.
    first, second = Bus(amqp_url, "agent"), Bus(amqp_url, "agent")
    await first.connect()
    await second.connect()
    try:
        queue = await first.declare_queue("handover-q", wire.Exchange.HEARTBEATS, wire.RoutingKey.HEARTBEAT)
        entered, release = asyncio.Event(), asyncio.Event()
        by_first: list[str] = []

        async def stuck(message: wire.Message, _: object) -> None:
            assert isinstance(message, wire.Heartbeat)
            entered.set()
            await release.wait()
            by_first.append(message.agent_id)

        consumer = first.consume(queue, wire.HEARTBEATS, stuck)
        await _heartbeats(first, 5)
        await asyncio.wait_for(entered.wait(), 10)
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        release.set()

        by_second: list[str] = []
        all_in = asyncio.Event()

        async def collect(message: wire.Message, _: object) -> None:
            assert isinstance(message, wire.Heartbeat)
            by_second.append(message.agent_id)
            if len(by_second) == 4:
                all_in.set()

        again = await second.declare_queue("handover-q", wire.Exchange.HEARTBEATS, wire.RoutingKey.HEARTBEAT)
        second.consume(again, wire.HEARTBEATS, collect)
        await asyncio.wait_for(all_in.wait(), 10)
        assert by_first == ["a0"]
        assert sorted(by_second) == ["a1", "a2", "a3", "a4"]
    finally:
        await first.close()
        await second.close()


async def test_an_idle_channel_takes_the_packed_publish_path(amqp_url: str) -> None:
    # The packed path needs aiormq's channel lock (a private name): in an aiormq without it every publish
    # would quietly take the client's slower path. This fails then, rather than the benchmarks drifting.
    bus = Bus(amqp_url, "master")
    await bus.connect()
    try:
        assert bus._publish_channel is not None
        channel = cast(aiormq.Channel, await bus._publish_channel.get_underlay_channel())
        assert not _busy(channel)
        await _heartbeats(bus, 3)  # confirmed, on that path
        assert bus._slow == 0 and not _busy(channel)
    finally:
        await bus.close()
