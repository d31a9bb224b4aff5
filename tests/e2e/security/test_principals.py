"""Principals: every process logs in as its own broker user, the broker enforces what each may read and
write, and receivers check each message's broker-checked ``user_id``. Each attack of issue 17 made by a
principal that holds valid credentials of its own (a framework, another agent), against a victim
framework whose task keeps running. Real RabbitMQ, etcd, dockerd.

On the old code every one of these passed: all processes shared ``guest``, nothing read ``user_id``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import aiormq.exceptions
import pytest

from meseta.sdk import FrameworkClient, SubscribeError, wire
from meseta.sdk.bus import user_of
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
    url: str, exchange: str, key: str, message: wire.Message, epoch: int | None = None
) -> None:
    """Publish as a principal, with its ``user_id`` (the broker checks it) and any epoch it likes."""
    async with channel_as(url) as channel:
        headers: dict[str, Any] = {} if epoch is None else {wire.HEADER_EPOCH: epoch}
        target = (
            channel.default_exchange if not exchange else await channel.get_exchange(exchange, ensure=False)
        )
        body = aio_pika.Message(
            wire.encode(message), headers=headers, type=message.type, user_id=user_of(url)
        )
        await target.publish(body, routing_key=key)


async def refused_by_broker(url: str, exchange: str, key: str, message: wire.Message) -> str:
    """Publish with confirms where the broker must refuse: the text of its ACCESS_REFUSED."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange, ensure=False)
        with pytest.raises(
            (aiormq.exceptions.ChannelAccessRefused, aio_pika.exceptions.ChannelClosed)
        ) as caught:
            await target.publish(
                aio_pika.Message(wire.encode(message), user_id=user_of(url)), routing_key=key
            )
            await asyncio.sleep(0.5)  # the refusal closes the channel asynchronously
            await channel.declare_queue(exclusive=True)  # any call on the closed channel raises it
        return str(caught.value)
    finally:
        await connection.close()


async def _ignore(_: aio_pika.abc.AbstractIncomingMessage) -> None:
    """A consumer that would read what it may not (the broker refuses it first)."""


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


async def test_a_framework_can_neither_command_agents_nor_read_what_is_not_its_own(
    amqp_url: str, etcd_prefix: str
) -> None:
    async with local_cluster(
        amqp_url, etcd_prefix, agents=1, principals=["alice", "bob"], offer_timeout=2
    ) as cluster:
        victim, agent_id = await running_victim(cluster)
        assert victim.framework_id is not None
        bob = cluster.url(cluster.principals.framework("bob"))
        kill = wire.KillTask(agent_id=agent_id, framework_id=victim.framework_id, task_id="victim-task")
        slow = wire.HeartbeatInterval(agent_id="all", seconds=3600)
        for exchange, key, message in (
            (wire.Exchange.LAUNCHES, agent_id, kill),
            (wire.Exchange.LAUNCHES, wire.RoutingKey.ALL_AGENTS, slow),
            (wire.Exchange.STATUS, wire.RoutingKey.STATUS, kill),
            (wire.Exchange.HEARTBEATS, wire.RoutingKey.HEARTBEAT, slow),
        ):
            text = await refused_by_broker(bob, exchange, key, message)
            assert "ACCESS_REFUSED" in text and exchange in text, text
        # Reading: the victim's queue, its offers by a binding of bob's own, the calls (and their secrets),
        # the dead letters.
        readers = (
            ("consume", wire.framework_queue(victim.framework_id), ""),
            ("bind", wire.Exchange.OFFERS, victim.framework_id),
            ("bind", wire.Exchange.CALLS, wire.RoutingKey.CALL),
            ("consume", wire.Queue.DEAD_LETTER, ""),
            ("consume", wire.Queue.MASTER_CALLS, ""),
        )
        for how, name, key in readers:
            async with channel_as(bob) as channel:
                with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                    if how == "consume":
                        queue = await channel.get_queue(name, ensure=False)
                        await queue.consume(_ignore)
                    else:
                        mine = await channel.declare_queue(wire.reply_queue("bob-spy"), exclusive=True)
                        await mine.bind(name, key)
        still_running(cluster, victim, agent_id)
        # Bob's own calls still work.
        assert (await run_one(await cluster.framework("bob", principal="bob"), short_task("b1"))).state == (
            wire.TaskState.FINISHED
        )


async def test_an_agent_obeys_only_the_master_and_reports_only_its_own_tasks(
    amqp_url: str, etcd_prefix: str
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=2, principals=["alice"]) as cluster:
        victim, agent_id = await running_victim(cluster)
        assert victim.framework_id is not None
        target = next(a for a in cluster.agents if a.agent_id == agent_id)
        other = next(a for a in cluster.agents if a.agent_id != agent_id)
        rogue = cluster.url(cluster.principals.agent(other.agent_id))  # a real agent's own credentials
        epoch = cluster.master.epoch
        fid = victim.framework_id
        uuids = tuple(target.unacknowledged) or (wire.unique_hex(),)
        # Commands into the victim's agent, stamped with the master's current epoch, and a forged epoch.
        forged = [
            wire.KillTask(agent_id=agent_id, framework_id=fid, task_id="victim-task"),
            wire.AcknowledgeUpdates(agent_id=agent_id, framework_id=fid, uuids=uuids),
            wire.LaunchTasks(agent_id=agent_id, framework_id=fid, tasks=(short_task("planted"),)),
        ]
        for message in forged:
            await publish_as(rogue, wire.Exchange.LAUNCHES, agent_id, message, epoch=epoch)
        await publish_as(rogue, wire.Exchange.LAUNCHES, agent_id, forged[0], epoch=2**62)
        slow = wire.HeartbeatInterval(agent_id="all", seconds=3600)
        await publish_as(rogue, wire.Exchange.LAUNCHES, wire.RoutingKey.ALL_AGENTS, slow, epoch=epoch)
        await wait_for(lambda: target.bus.refused == 5 and other.bus.refused == 1, 15, "the agents' refusals")
        assert 2**62 not in target.bus.epochs_accepted
        assert target.told_interval == 0 and other.told_interval == 0
        # Status: one for the victim's agent, sent by the other; one about the victim's task, from an
        # agent it does not run on.
        finished = wire.TaskStatus(task_id="victim-task", state=wire.TaskState.FINISHED, agent_id=agent_id)
        as_victim = wire.StatusUpdate(agent_id=agent_id, framework_id=fid, status=finished)
        await publish_as(
            rogue,
            wire.Exchange.STATUS,
            wire.RoutingKey.STATUS,
            wire.StatusUpdates(agent_id=agent_id, updates=(as_victim,)),
        )
        mine = as_victim.model_copy(update={"agent_id": other.agent_id})
        await publish_as(
            rogue,
            wire.Exchange.STATUS,
            wire.RoutingKey.STATUS,
            wire.StatusUpdates(agent_id=other.agent_id, updates=(mine,)),
        )
        # A fake agent under a name nobody provisioned.
        fake = wire.RegisterAgent(
            agent_id="fake", hostname="fake", resources=wire.Resources(cpus=64, mem=65536)
        )
        await publish_as(rogue, wire.Exchange.HEARTBEATS, wire.RoutingKey.HEARTBEAT, fake)
        await wait_for(lambda: cluster.master.bus.refused == 2, 15, "the master's refusals")
        await asyncio.sleep(
            0
        )  # the second update (accepted from its sender, ignored for its task) is handled
        await wait_for(lambda: cluster.master.bus.dead_lettered >= 2, 15, "dead letters")
        still_running(cluster, victim, agent_id)
        assert "fake" not in cluster.master.cluster.agents
        assert ("alice", "planted") not in target.tasks and (fid, "planted") not in target.tasks


async def test_a_forged_epoch_cannot_silence_a_framework(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1, principals=["alice"]) as cluster:
        victim, agent_id = await running_victim(cluster)
        assert victim.framework_id is not None
        rogue = cluster.url(cluster.principals.agent(agent_id))
        # An agent may write to the default exchange (its answers to GET_LOGS): straight into the
        # framework's queue, with an epoch that would make it drop every real message.
        rescind = wire.Rescind(framework_id=victim.framework_id, offer_id="offer-0")
        await publish_as(rogue, "", wire.framework_queue(victim.framework_id), rescind, epoch=2**62)
        await wait_for(lambda: victim._bus.refused == 1, 15, "the framework's refusal")
        assert 2**62 not in victim._bus.epochs_accepted
        await victim.kill("victim-task")
        status = None
        while status is None or not status.state.terminal:
            status = (await next_event(victim, wire.Update, 30)).status
        assert status.state == wire.TaskState.KILLED


async def test_operator_calls_need_the_operator_principal(amqp_url: str, etcd_prefix: str) -> None:
    from meseta.sdk import KillRefused, LogsUnavailable
    from meseta.sdk.bus import Bus
    from meseta.sdk.calls import fetch_logs, operator_kill

    async with local_cluster(
        amqp_url, etcd_prefix, agents=1, principals=["alice", "bob"], offer_timeout=2
    ) as cluster:
        victim, agent_id = await running_victim(cluster)
        bob = Bus(cluster.url(cluster.principals.framework("bob")), "bob")
        operator = Bus(cluster.url(cluster.principals.operator), "operator")
        await bob.connect()
        await operator.connect()
        try:
            with pytest.raises(KillRefused, match=r"UNAUTHORIZED.*operator"):
                await operator_kill(bob, "victim-task", victim.framework_id)
            with pytest.raises(LogsUnavailable, match=r"UNAUTHORIZED.*operator"):
                await fetch_logs(bob, "victim-task", victim.framework_id)
            with pytest.raises(LogsUnavailable, match=r"UNAUTHORIZED.*operator"):
                await fetch_logs(bob, "victim-task")  # naming no framework
            own = await victim.logs("victim-task")  # a framework reads its own tasks' logs
            assert own.task_id == "victim-task"
            still_running(cluster, victim, agent_id)
            logs = await fetch_logs(operator, "victim-task", victim.framework_id)
            assert logs.task_id == "victim-task"
            await operator_kill(operator, "victim-task", victim.framework_id)
        finally:
            await bob.close()
            await operator.close()
        status = None
        while status is None or not status.state.terminal:
            status = (await next_event(victim, wire.Update, 30)).status
        assert status.state == wire.TaskState.KILLED


async def test_the_acl_says_who_subscribes_under_which_role_weight_and_priority(
    amqp_url: str, etcd_prefix: str
) -> None:
    acl = {"alice": {"roles": ["*", "prod"], "max_weight": 3, "max_priority": 5}}
    async with local_cluster(
        amqp_url, etcd_prefix, agents=1, principals=["alice", "bob"], acl=acl
    ) as cluster:
        for kwargs in ({"role": "prod"}, {"weight": 1.5}, {"priority": 1}):
            with pytest.raises(SubscribeError, match="UNAUTHORIZED: principal bob may not"):
                await cluster.framework("greedy", principal="bob", **kwargs)
        alice = await cluster.framework("prod", principal="alice", role="prod", weight=3, priority=5)
        with pytest.raises(SubscribeError, match="UNAUTHORIZED: principal alice may not ask for weight"):
            await cluster.framework("greedier", principal="alice", weight=4)
        # Bob holds alice's framework id and secret (say, leaked): still not his to take over.
        thief = FrameworkClient(
            cluster.url(cluster.principals.framework("bob")),
            "thief",
            framework_id=alice.framework_id,
            secret=alice.secret,
        )
        with pytest.raises(SubscribeError, match="UNAUTHORIZED: framework belongs to principal alice"):
            await thief.subscribe()
        await thief.close()
        frameworks = cluster.master.cluster.frameworks
        assert {(f.name, f.principal, f.role, f.weight) for f in frameworks.values()} == {
            ("prod", "alice", "prod", 3.0)
        }
        assert (await run_one(alice, short_task("a1"))).state == wire.TaskState.FINISHED
