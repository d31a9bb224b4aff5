"""Broker faults: connections dropped under a running workload are survived."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from meseta.sdk import wire
from meseta.sdk.bus import Bus
from meseta.testing.local import local_cluster, run_batch, short_task
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.e2e


def drop_connections(vhost: str) -> str:
    """Force-close every client connection of a vhost, as a broker restart would."""
    done = subprocess.run(
        ["rabbitmqctl", "close_all_connections", "--vhost", vhost, "meseta fault test"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout + done.stderr


async def test_dropped_connections_mid_workload(amqp_url: str, etcd_prefix: str) -> None:
    vhost = amqp_url.rsplit("/", 1)[1]
    async with local_cluster(amqp_url, etcd_prefix, agents=2) as cluster:
        client = await cluster.framework("steady")
        tasks = [short_task(f"t-{i}", cpus=0.5, mem=32, script="sleep 0.3") for i in range(24)]
        workload = asyncio.create_task(run_batch(client, tasks))
        await wait_for(lambda: client.stats.tasks_launched >= 6, 30, "the workload to start")
        await asyncio.to_thread(drop_connections, vhost)
        run = await asyncio.wait_for(workload, 120)
        assert run.states() == {"FINISHED": 24}
        # Every party lost its connection and came back on its own.
        for bus in (cluster.master.bus, cluster.allocator.bus, *(a.bus for a in cluster.agents), client._bus):
            assert bus.reconnects >= 1, bus.service


async def test_publishes_keep_their_order_across_a_dropped_connection(amqp_url: str) -> None:
    # Suppress-then-revive must not arrive as revive-then-suppress: a publish that failed with the link
    # was resent after the reconnect, behind publishes made since, and a framework starved for ever.
    vhost = amqp_url.rsplit("/", 1)[1]
    sender, receiver = Bus(amqp_url, "sender"), Bus(amqp_url, "receiver")
    await sender.connect()
    await receiver.connect()
    try:
        queue = await receiver.declare_queue("order", wire.Exchange.HEARTBEATS, "order")
        got: list[str] = []

        async def record(message: wire.Message, _: object) -> None:
            got.append(message.agent_id)  # type: ignore[attr-defined]

        receiver.consume(queue, wire.HEARTBEATS, record)
        reconnected = asyncio.Event()
        assert sender._connection is not None
        sender._connection.reconnect_callbacks.add(lambda *_: reconnected.set())

        def send(i: int) -> asyncio.Task[None]:
            beat = wire.Heartbeat(agent_id=f"a{i}", free=wire.Resources(cpus=1))
            return asyncio.create_task(sender.publish(wire.Exchange.HEARTBEATS, "order", beat))

        await asyncio.to_thread(drop_connections, vhost)
        connection = sender._connection
        await wait_for(lambda: not connection.connected.is_set(), 30, "the sender to see the drop")
        early = [send(i) for i in range(30)]  # fail, and wait for the link to come back
        await asyncio.wait_for(reconnected.wait(), 60)
        late = [send(i) for i in range(30, 60)]  # at once, while the early ones wait to be resent
        await asyncio.wait_for(asyncio.gather(*early, *late), 90)
        await wait_for(lambda: len(set(got)) == 60, 30, "every message")
        assert list(dict.fromkeys(got)) == [f"a{i}" for i in range(60)]
    finally:
        await sender.close()
        await receiver.close()
