"""Principals: every process logs in as its own broker user, the broker enforces what each may read and
write, and receivers check each message's broker-checked ``user_id``. Each attack of issue 17 made by a
principal that holds valid credentials of its own (a framework, another agent), against a victim
framework whose task keeps running. Real RabbitMQ, etcd, dockerd.

On the old code every one of these passed: all processes shared ``guest``, nothing read ``user_id``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import aiormq.exceptions
import pytest

from meseta.sdk import FrameworkClient, SubscribeError, wire

from meseta.testing.local import Cluster, local_cluster, next_event, run_one, short_task
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.e2e

SLEEPER = "sleep 120"


@asynccontextmanager
async def channel_as(url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def publish_as(
    url: str, exchange: str, key: str, message: wire.Message, epoch: int | None = None, **props: Any
) -> None:
    """Publish as a principal, with its ``user_id`` (the broker checks it) and any epoch it likes."""
    async with channel_as(url) as channel:
        user = wire.identify(url.split("//")[1].split(":")[0].replace("%2E", "."))
        assert user is not None or True
        headers = {} if epoch is None else {wire.HEADER_EPOCH: epoch}
        target = channel.default_exchange if not exchange else await channel.get_exchange(exchange, ensure=False)
        body = aio_pika.Message(
            wire.encode(message), headers=headers, type=message.type, user_id=_user(url), **props
        )
        await target.publish(body, routing_key=key)


def _user(url: str) -> str:
    from meseta.sdk.bus import user_of

    return user_of(url)


async def refused_by_broker(url: str, exchange: str, key: str, message: wire.Message) -> str:
    """Publish with confirms where the broker must refuse: the text of its ACCESS_REFUSED."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange, ensure=False)
        with pytest.raises((aiormq.exceptions.ChannelAccessRefused, aio_pika.exceptions.ChannelClosed)) as caught:
            await target.publish(aio_pika.Message(wire.encode(message), user_id=_user(url)), routing_key=key)
            await asyncio.sleep(0.5)  # the refusal closes the channel asynchronously
            await channel.declare_queue(exclusive=True)  # any call on the closed channel raises it
        return str(caught.value)
    finally:
        await connection.close()


async def running_victim(cluster: Cluster) -> tuple[FrameworkClient, str]:
    """The victim framework (principal alice) with one long task RUNNING; its agent id."""
    victim = await cluster.framework("victim", principal="alice")
    offer = (await next_event(victim, wire.Offers)).offers[0]
    await victim.accept([offer.offer_id], [short_task("victim-task", script=SLEEPER)])
    while True:
        update = await next_event(victim, wire.Update, 60)
        if update.status.state == wire.TaskState.RUNNING:
            return victim, offer.agent_id
        assert not update.status.state.terminal, update.status


def still_running(cluster: Cluster, victim: FrameworkClient, agent_id: str) -> None:
    task = cluster.master.cluster.tasks.get((victim.framework_id or "", "victim-task"))
    assert task is not None and task.state == wire.TaskState.RUNNING, task
    agent = next(a for a in cluster.agents if a.agent_id == agent_id)
    assert (victim.framework_id, "victim-task") in agent.tasks
    assert agent_id in cluster.master.cluster.agents


async def test_a_cluster_of_principals_runs_tasks(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1, principals=["alice"]) as cluster:
        client = await cluster.framework("batch", principal="alice")
        assert client.framework_id is not None and client.framework_id.startswith("alice-")
        assert (await run_one(client, short_task("t1"))).state == wire.TaskState.FINISHED
        assert cluster.master.bus.refused == 0 and cluster.agents[0].bus.refused == 0
