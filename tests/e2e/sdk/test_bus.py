"""The bus on a real broker: what a publish does once the bus is closed."""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

import aiormq
import pytest

from meseta.sdk import _fastpath, wire
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
    # The installed aiormq passes the self-check, and publishes take the packed path (confirmed there).
    bus = Bus(amqp_url, "master")
    await bus.connect()
    try:
        assert bus.fast_path == _fastpath.Verdict(True)
        assert bus._publish_channel is not None
        channel = cast(aiormq.Channel, await bus._publish_channel.get_underlay_channel())
        assert not _fastpath.busy(channel)
        sent = channel.delivery_tag
        await _heartbeats(bus, 3)  # confirmed, on that path
        assert bus._slow == 0 and not _fastpath.busy(channel)
        assert channel.delivery_tag == sent + 3  # booked by the fast path as aiormq books its own
    finally:
        await bus.close()


class _OtherChannel:
    """An aiormq channel of some other release: the private lock has gone (renamed)."""

    delivery_tag = 0
    confirmations: dict[int, object] = {}
    message_id_delivery_tag: dict[str, int] = {}
    write_queue: asyncio.Queue[object] = asyncio.Queue()
    number = 1
    max_content_size = 131072
    _lock = asyncio.Lock()

    def create_future(self) -> asyncio.Future[object]:
        return asyncio.get_running_loop().create_future()


async def test_the_self_check_refuses_what_it_was_not_written_for(amqp_url: str) -> None:
    bus = Bus(amqp_url, "master")
    await bus.connect()
    try:
        assert bus._publish_channel is not None
        real = await bus._publish_channel.get_underlay_channel()
        tested = {"aiormq": (7, 2), "pamqp": (4, 0)}
        assert _fastpath.check(real, tested).enabled
        assert _fastpath.check(_OtherChannel(), tested).reason == (
            "aiormq's channel has no _Channel__lock of the expected type"
        )
        assert (
            _fastpath.check(real, {**tested, "aiormq": (7, 3)}).reason == "aiormq 7.3 is not the tested 7.2.x"
        )
        assert (
            _fastpath.check(real, {**tested, "pamqp": None}).reason == "pamqp missing is not the tested 4.0.x"
        )
    finally:
        await bus.close()


async def test_off_the_fast_path_publishes_still_go_and_say_why_once(
    amqp_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(_fastpath.SWITCH, "0")
    monkeypatch.setattr(_fastpath, "_said", set())
    buses = [Bus(amqp_url, "master"), Bus(amqp_url, "agent")]
    try:
        for bus in buses:
            await bus.connect()
        assert [b.fast_path.enabled for b in buses] == [False, False]
        said = [r.getMessage() for r in caplog.records if "fast path off" in r.getMessage()]
        assert said == [
            "master: AMQP fast path off (MESETA_AMQP_FAST_PATH turns it off): "
            "publishing through aiormq's own path"
        ]
        channel = await buses[0]._publish_channel.get_underlay_channel()  # type: ignore[union-attr]
        slow_publishes: list[object] = []
        original = channel.basic_publish

        async def spy(*args: object, **kwargs: object) -> object:
            slow_publishes.append(args)
            return await original(*args, **kwargs)

        monkeypatch.setattr(channel, "basic_publish", spy)
        await _heartbeats(buses[0], 3)  # confirmed, through aiormq's own publish
        assert len(slow_publishes) == 3
    finally:
        for bus in buses:
            await bus.close()
