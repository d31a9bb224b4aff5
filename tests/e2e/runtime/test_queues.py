"""Which queues are replicated: on a cluster, the master's, the allocator's, the frameworks' and the
dead-letter queue are quorum queues (with a delivery limit and dead-lettering), replies classic, agents'
as each agent's own setting says; with one broker URL all are classic. A queue an older Meseta
declared classic is used as it is, with a warning.
Real RabbitMQ (one node: quorum queues work there too)."""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import quote, urlsplit

import aio_pika
import pytest

from meseta.runtime.rabbitmq import Management
from meseta.sdk import wire
from meseta.testing.local import local_cluster, run_one, short_task

pytestmark = pytest.mark.e2e


def queues(amqp_url: str) -> dict[str, dict[str, object]]:
    vhost = quote(urlsplit(amqp_url).path.lstrip("/"), safe="")
    return {q["name"]: q for q in json.loads(Management().call("GET", f"/queues/{vhost}"))}


async def test_queues_whose_loss_loses_work_are_quorum_queues(amqp_url: str, etcd_prefix: str) -> None:
    # As on a RabbitMQ cluster (the default where services are given several nodes' URLs).
    async with local_cluster(amqp_url, etcd_prefix, agents=1, queue_type="quorum") as cluster:
        client = await cluster.framework("replicated")
        assert (await run_one(client, short_task("t1"))).state == wire.TaskState.FINISHED
        found = queues(amqp_url)
        replicated = [
            wire.Queue.MASTER_CALLS,
            wire.Queue.MASTER_STATUS,
            wire.Queue.MASTER_HEARTBEATS,
            wire.Queue.MASTER_ALLOCATIONS,
            wire.Queue.ALLOCATOR_EVENTS,
            wire.framework_queue(client.framework_id or ""),
        ]
        for name in replicated:
            assert found[name]["type"] == "quorum", name
            arguments = found[name]["arguments"]
            assert isinstance(arguments, dict)
            assert arguments["x-delivery-limit"] == wire.DELIVERY_LIMIT
            assert arguments["x-dead-letter-exchange"] == wire.Exchange.DEAD_LETTER
        # Dead letters are kept on a cluster too, still bounded.
        assert found[wire.Queue.DEAD_LETTER]["type"] == "quorum"
        assert found[wire.Queue.DEAD_LETTER]["arguments"] == {
            **dict(wire.DEAD_LETTER_LIMITS),
            "x-queue-type": "quorum",
        }
        assert found[wire.agent_queue(cluster.agents[0].agent_id)]["type"] == "classic"


async def test_a_classic_queue_an_older_meseta_declared_is_used_with_a_warning(
    amqp_url: str, etcd_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    await channel.declare_queue(
        wire.Queue.MASTER_CALLS, durable=True, arguments={"x-dead-letter-exchange": wire.Exchange.DEAD_LETTER}
    )
    await connection.close()
    with caplog.at_level(logging.WARNING):
        async with local_cluster(amqp_url, etcd_prefix, agents=1, queue_type="quorum") as cluster:
            client = await cluster.framework("on-classic")
            assert (await run_one(client, short_task("t1"))).state == wire.TaskState.FINISHED
    assert queues(amqp_url)[wire.Queue.MASTER_CALLS]["type"] == "classic"
    assert any(
        f"queue {wire.Queue.MASTER_CALLS} exists with other arguments" in r.message for r in caplog.records
    )


def test_the_queue_type_follows_the_brokers_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from meseta.sdk.bus import Bus

    monkeypatch.delenv("MESETA_QUEUE_TYPE", raising=False)
    assert Bus("amqp://guest:guest@h1/v", "one").queue_type == "classic"
    assert Bus("amqp://guest:guest@h1/v,amqp://guest:guest@h2/v", "cluster").queue_type == "quorum"
    monkeypatch.setenv("MESETA_QUEUE_TYPE", "quorum")
    assert Bus("amqp://guest:guest@h1/v", "forced").queue_type == "quorum"


async def test_declarations_share_one_channel_and_a_refusal_spoils_only_its_own(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from meseta.sdk.bus import Bus

    # Queue 5 exists classic, as an older Meseta left it; this bus asks for quorum queues.
    connection = await aio_pika.connect(amqp_url)
    await (await connection.channel()).declare_queue("probe-5", durable=True)
    await connection.close()
    bus = Bus(amqp_url, "prober", queue_type="quorum")
    await bus.connect()
    try:
        assert bus._connection is not None
        opened = 0
        channel = bus._connection.channel

        def counting(*args: object, **kwargs: object) -> object:
            nonlocal opened
            opened += 1
            return channel(*args, **kwargs)  # type: ignore[arg-type]

        bus._connection.channel = counting  # type: ignore[method-assign]
        with caplog.at_level(logging.WARNING):
            declared = await asyncio.gather(
                *(
                    bus.declare_queue(f"probe-{i}", wire.Exchange.OFFERS, f"p{i}", replicated=True)
                    for i in range(12)
                )
            )
        # One channel for the tries, and one more after the refusal closed it (a channel a queue before).
        assert opened == 2
        assert [q.name for q in declared] == [f"probe-{i}" for i in range(12)]
        found = queues(amqp_url)
        assert found["probe-5"]["type"] == "classic"
        assert all(found[f"probe-{i}"]["type"] == "quorum" for i in range(12) if i != 5)
        warned = [r.message for r in caplog.records if "exists with other arguments" in r.message]
        assert len(warned) == 1 and "probe-5" in warned[0]
    finally:
        await bus.close()
