"""Bad input is dead-lettered with a reason or answered with ERROR; the services keep serving."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest

from meseta.sdk import wire
from meseta.testing.local import dead_letters, local_cluster, next_event, run_batch, short_task

pytestmark = pytest.mark.e2e

BAD_BODIES = {
    "garbage": (b"\x8f\x00 not json {", "malformed"),
    "unknown type": (
        json.dumps({"type": "WHAT_IS_THIS", "version": wire.PROTOCOL_VERSION}).encode(),
        "unknown type 'WHAT_IS_THIS'",
    ),
    "wrong version": (json.dumps({"type": "HEARTBEAT", "version": 99}).encode(), "wrong version: 99"),
    "protocol 1": (
        json.dumps({"type": "STATUS_UPDATE", "version": 1}).encode(),
        "wrong version: 1, this side speaks 2",
    ),
}


async def test_bad_messages_on_every_exchange_are_dead_lettered(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        framework = await cluster.framework("victim")
        targets = [
            (wire.Exchange.HEARTBEATS, wire.RoutingKey.HEARTBEAT),
            (wire.Exchange.STATUS, wire.RoutingKey.STATUS),
            (wire.Exchange.CALLS, wire.RoutingKey.CALL),
            (wire.Exchange.ALLOCATION, wire.RoutingKey.TO_ALLOCATOR),
            (wire.Exchange.ALLOCATION, wire.RoutingKey.TO_MASTER),
            (wire.Exchange.LAUNCHES, cluster.agents[0].agent_id),
            (wire.Exchange.OFFERS, framework.framework_id),
        ]
        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel()
        for exchange_name, routing_key in targets:
            exchange = await channel.get_exchange(exchange_name)
            for body, _ in BAD_BODIES.values():
                await exchange.publish(aio_pika.Message(body), routing_key=str(routing_key))
        oversized = b'{"type": "ACCEPT", "pad": "' + b"x" * (wire.MAX_MESSAGE_BYTES + 10) + b'"}'
        await (await channel.get_exchange(wire.Exchange.CALLS)).publish(
            aio_pika.Message(oversized), routing_key=wire.RoutingKey.CALL
        )
        await connection.close()

        expected = len(targets) * len(BAD_BODIES) + 1
        letters = await dead_letters(amqp_url, expected)
        assert len(letters) == expected
        seen = {(m.headers[wire.HEADER_ORIGIN], m.body[:40]) for m in letters}
        for exchange_name, routing_key in targets:
            for body, _ in BAD_BODIES.values():
                assert (f"{exchange_name}/{routing_key}", body[:40]) in seen
        reasons = [str(m.headers[wire.HEADER_REASON]) for m in letters]
        for _, fragment in BAD_BODIES.values():
            assert sum(fragment in r for r in reasons) == len(targets), fragment
        assert any(r.startswith("oversized") for r in reasons)

        # Every service still serves: a normal task runs to FINISHED.
        run = await asyncio.wait_for(run_batch(framework, [short_task("after-garbage")]), 30)
        assert run.states() == {"FINISHED": 1}


async def test_refused_accepts_get_errors_and_launch_nothing(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1) as cluster:
        owner = await cluster.framework("owner")
        offer = (await next_event(owner, wire.Offers)).offers[0]
        intruder = await cluster.framework("intruder")

        call_id = await intruder.accept([offer.offer_id], [short_task("stolen")])
        error = await next_event(intruder, wire.Error)
        assert error.code == wire.ErrorCode.FOREIGN_OFFER
        assert error.correlation_id == call_id

        too_big = short_task("too-big", cpus=offer.resources.cpus + 1)
        call_id = await owner.accept([offer.offer_id], [too_big])
        error = await next_event(owner, wire.Error)
        assert error.code == wire.ErrorCode.INSUFFICIENT_RESOURCES
        assert error.correlation_id == call_id
        assert "tasks need cpus=3" in error.message

        await owner.accept(["offer-does-not-exist"], [short_task("ghost"), short_task("ghost-2")])
        assert (await next_event(owner, wire.Error)).code == wire.ErrorCode.UNKNOWN_OFFER

        # Each refused task also ends in an update, as Mesos sends: ERROR when the task was at fault,
        # LOST (INVALID_OFFERS) when its offers were; from the master, so from no agent.
        refused = {}
        while len(refused) < 3:
            status = (await next_event(owner, wire.Update)).status
            refused[status.task_id] = (status.state, status.reason, status.agent_id)
        assert refused == {
            "too-big": (wire.TaskState.ERROR, wire.StatusReason.INVALID_TASK, None),
            "ghost": (wire.TaskState.LOST, wire.StatusReason.INVALID_OFFERS, None),
            "ghost-2": (wire.TaskState.LOST, wire.StatusReason.INVALID_OFFERS, None),
        }
        stolen = (await next_event(intruder, wire.Update)).status
        assert (stolen.task_id, stolen.state, stolen.reason) == (
            "stolen",
            wire.TaskState.LOST,
            wire.StatusReason.INVALID_OFFERS,
        )

        assert cluster.master.cluster.tasks == {}
        assert all(not agent.tasks for agent in cluster.agents)

        # The refused calls left the offer intact: the owner can still use it.
        await owner.accept([offer.offer_id], [short_task("legit")])
        update = await next_event(owner, wire.Update)
        while not update.status.state.terminal:
            update = await next_event(owner, wire.Update)
        assert update.status.task_id == "legit"
        assert update.status.state == wire.TaskState.FINISHED
