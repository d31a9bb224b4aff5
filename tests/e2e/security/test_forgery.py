"""Hostile input from anyone on the broker: infinite and huge numbers, a uuid that climbs out of the
agent's directory, a forged epoch that would silence a consumer, an unstamped message only a leader
sends. Each is refused with its reason, and the cluster goes on serving. Real RabbitMQ, etcd, dockerd.

These run on development clusters (everyone is ``guest``): what any process that reaches the broker
could send. Forged senders and epochs from principals with credentials of their own are in
test_principals.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aio_pika
import pytest

from meseta.sdk import wire
from meseta.testing.local import Cluster, dead_letters, local_cluster, run_one, short_task

pytestmark = pytest.mark.e2e


async def publish(amqp_url: str, exchange: str, key: str, body: dict[str, Any] | bytes, **props: Any) -> None:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    target = channel.default_exchange if not exchange else await channel.get_exchange(exchange)
    await target.publish(aio_pika.Message(data, **props), routing_key=key)
    await connection.close()


async def answer_to(amqp_url: str, exchange: str, key: str, body: dict[str, Any]) -> wire.Message:
    """Publish a call with a private reply queue; the answer."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    replies = await channel.declare_queue(exclusive=True)
    target = await channel.get_exchange(exchange)
    await target.publish(aio_pika.Message(json.dumps(body).encode(), reply_to=replies.name), routing_key=key)
    async with asyncio.timeout(15), replies.iterator() as answers:
        async for incoming in answers:
            await incoming.ack()
            answer = wire.decode(incoming.body, wire.REPLIES)
            break
    await connection.close()
    return answer


async def still_serves(cluster: Cluster, name: str) -> None:
    """A new framework gets an offer and runs a task to the end."""
    client = await cluster.framework(name)
    assert (await run_one(client, short_task(f"{name}-task"))).state == wire.TaskState.FINISHED


async def test_infinite_and_huge_numbers_are_refused(amqp_url: str, etcd_prefix: str) -> None:
    # `mem: Infinity` was accepted, and the master's accounting could not hold it (its sweep raised).
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        envelope = {"version": wire.PROTOCOL_VERSION}
        evil_agent = {
            **envelope,
            "type": "REGISTER_AGENT",
            "agent_id": "evil",
            "hostname": "evil",
            "resources": {"cpus": 1, "mem": float("inf")},
        }
        await publish(amqp_url, wire.Exchange.HEARTBEATS, wire.RoutingKey.HEARTBEAT, evil_agent)
        huge_agent = {**evil_agent, "agent_id": "huge", "resources": {"cpus": 1e300}}
        await publish(amqp_url, wire.Exchange.HEARTBEATS, wire.RoutingKey.HEARTBEAT, huge_agent)
        for weight in (float("inf"), float("nan"), 1e12):
            subscribe = {**envelope, "type": "SUBSCRIBE", "name": "greedy", "weight": weight}
            answer = await answer_to(amqp_url, wire.Exchange.CALLS, wire.RoutingKey.CALL, subscribe)
            assert isinstance(answer, wire.Error) and answer.code == wire.ErrorCode.INVALID_CALL, answer
            assert "weight" in answer.message
        reasons = [str(m.headers[wire.HEADER_REASON]) for m in await dead_letters(amqp_url, 5)]
        assert (
            sum("finite number" in r for r in reasons) == 3
            and sum("less than or equal" in r for r in reasons) == 2
        )
        await still_serves(cluster, "after")
        assert set(cluster.master.cluster.agents) == {cluster.agents[0].agent_id}
        assert all(fw.name != "greedy" for fw in cluster.master.cluster.frameworks.values())


async def test_an_acknowledgement_cannot_name_a_file_outside_the_agent(
    amqp_url: str, etcd_prefix: str
) -> None:
    # The uuid named the file the agent unlinks: "../../sentinel" reached its work directory's parent.
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        agent = cluster.agents[0]
        sentinel = agent.settings.work_dir / "sentinel.json"
        sentinel.parent.mkdir(parents=True, exist_ok=True)
        sentinel.write_text("{}")
        client = await cluster.framework("climber")
        ack = {"agent_id": agent.agent_id, "task_id": "t1", "uuid": "../../sentinel"}
        call = {
            "type": "ACKNOWLEDGE",
            "version": wire.PROTOCOL_VERSION,
            "framework_id": client.framework_id,
            "secret": client.secret,
            "acks": [ack],
        }
        answer = await answer_to(amqp_url, wire.Exchange.CALLS, wire.RoutingKey.CALL, call)
        assert isinstance(answer, wire.Error) and answer.code == wire.ErrorCode.INVALID_CALL, answer
        assert "acks.0.uuid" in answer.message and "pattern" in answer.message
        assert sentinel.exists()
        await client.teardown()  # its outstanding offer goes back to the pool
        await still_serves(cluster, "after")


async def test_a_forged_epoch_or_an_unstamped_leader_message_cannot_silence_anyone(
    amqp_url: str, etcd_prefix: str
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        agent = cluster.agents[0]
        # Not even JSON, but stamped with a huge epoch: the agent adopted the epoch before decoding the
        # body, then dropped every message of the real leader as "deposed".
        await publish(
            amqp_url,
            wire.Exchange.LAUNCHES,
            agent.agent_id,
            b"\x00 not json",
            headers={wire.HEADER_EPOCH: 2**62},
        )
        # A bare STATE_SYNC with no epoch wiped the allocator's view: no framework got an offer again.
        state_sync = {"type": "STATE_SYNC", "version": wire.PROTOCOL_VERSION}
        await publish(amqp_url, wire.Exchange.ALLOCATION, wire.RoutingKey.TO_ALLOCATOR, state_sync)
        # Nor may an unstamped KILL or LAUNCH reach an agent (only the leading master sends them).
        kill = {
            "type": "KILL",
            "version": wire.PROTOCOL_VERSION,
            "agent_id": agent.agent_id,
            "framework_id": "fw-x",
            "task_id": "t-x",
        }
        await publish(amqp_url, wire.Exchange.LAUNCHES, agent.agent_id, kill)
        reasons = sorted(str(m.headers[wire.HEADER_REASON])[:40] for m in await dead_letters(amqp_url, 3))
        assert reasons[0].startswith("malformed"), reasons
        assert reasons[1].startswith("unstamped KILL") and reasons[2].startswith("unstamped STATE_SYNC"), (
            reasons
        )
        await still_serves(cluster, "after")  # offers from the allocator, a launch and updates via the agent
        assert 2**62 not in agent.bus.epochs_accepted
