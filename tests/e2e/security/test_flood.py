"""A flood of bad messages is bounded: the dead-letter queue keeps the newest 10,000 (64 MiB at most) and
only the head of each body; the cluster serves on. Real RabbitMQ."""

from __future__ import annotations

import json
import os
from urllib.parse import quote, urlsplit

import aio_pika
import pytest

from meseta.runtime.rabbitmq import Management
from meseta.sdk import wire
from meseta.testing.local import Cluster, dead_letters, local_cluster, run_one, short_task
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.e2e


async def test_a_flood_of_bad_messages_is_bounded(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        vhost = urlsplit(amqp_url).path.lstrip("/")
        queue = json.loads(
            Management().call("GET", f"/queues/{quote(vhost, safe='')}/{wire.Queue.DEAD_LETTER}")
        )
        assert queue["arguments"] == dict(wire.DEAD_LETTER_LIMITS)  # the broker enforces them

        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel()
        calls = await channel.get_exchange(wire.Exchange.CALLS)
        oversized = b'{"type": "ACCEPT", "pad": "' + b"x" * (wire.MAX_MESSAGE_BYTES + 10) + b'"}'
        for _ in range(10):
            await calls.publish(aio_pika.Message(oversized), routing_key=wire.RoutingKey.CALL)
        for _ in range(1000):
            await calls.publish(aio_pika.Message(os.urandom(512)), routing_key=wire.RoutingKey.CALL)
        await connection.close()

        letters = await dead_letters(amqp_url, 1010, timeout=60)
        assert len(letters) == 1010
        big = [m for m in letters if wire.HEADER_ORIGINAL_BYTES in (m.headers or {})]
        assert len(big) == 10
        assert all(len(m.body) == wire.DEAD_LETTER_BODY_BYTES for m in big)
        assert all(m.headers[wire.HEADER_ORIGINAL_BYTES] == len(oversized) for m in big)

        client = await cluster.framework("after-the-flood")
        assert (await run_one(client, short_task("still-served"))).state == wire.TaskState.FINISHED


async def test_a_removed_framework_s_queue_is_deleted(amqp_url: str, etcd_prefix: str) -> None:
    # Framework queues were never deleted: every framework that came and went kept its queue, and what
    # was routed to it, in the broker for ever.
    vhost = quote(urlsplit(amqp_url).path.lstrip("/"), safe="")

    def queue_names() -> set[str]:
        return {q["name"] for q in json.loads(Management().call("GET", f"/queues/{vhost}"))}

    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        client = await cluster.framework("short-lived")
        name = wire.framework_queue(client.framework_id or "")
        assert name in queue_names()
        await client.teardown()
        await wait_for(lambda: name not in queue_names(), 10, "the framework's queue to be deleted")
        await still_serves_after(cluster)


async def still_serves_after(cluster: Cluster) -> None:
    client = await cluster.framework("next")
    assert (await run_one(client, short_task("next-task"))).state == wire.TaskState.FINISHED


@pytest.mark.serial
@pytest.mark.timeout(300)
async def test_ten_thousand_bad_messages_leave_the_broker_bounded(amqp_url: str, etcd_prefix: str) -> None:
    # Past the dead-letter queue's bound (10,000): its length stays there (the oldest dropped), the
    # master's own queue is drained, and the cluster serves on. Serial: a flood loads the whole machine.
    flood = 10_500
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel()
        calls = await channel.get_exchange(wire.Exchange.CALLS)
        oversized = b'{"type": "ACCEPT", "pad": "' + b"x" * (wire.MAX_MESSAGE_BYTES + 10) + b'"}'
        for i in range(flood):
            body = oversized if i % 1000 == 0 else os.urandom(512)
            await calls.publish(aio_pika.Message(body), routing_key=wire.RoutingKey.CALL)

        async def depth(name: str) -> int:
            declared = await channel.declare_queue(name, passive=True)
            return int(declared.declaration_result.message_count or 0)

        await wait_for(lambda: cluster.master.bus.dead_lettered >= flood, 120, "the master to dead-letter it")
        assert await depth(wire.Queue.MASTER_CALLS) == 0
        assert await depth(wire.Queue.DEAD_LETTER) == 10_000  # the bound, not 10,500
        await connection.close()
        client = await cluster.framework("after-the-flood")
        assert (await run_one(client, short_task("still-served"))).state == wire.TaskState.FINISHED
