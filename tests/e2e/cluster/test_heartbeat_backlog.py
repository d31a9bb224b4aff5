"""A master judges agents by the heartbeats they sent, not by how fast it reads them."""

from __future__ import annotations

import time

import pytest

from meseta.sdk import wire
from meseta.testing.local import local_cluster
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.e2e


async def test_no_agent_is_lost_while_its_heartbeats_wait_unread(amqp_url: str, etcd_prefix: str) -> None:
    timeout = 1.5
    async with local_cluster(
        amqp_url, etcd_prefix, agents=1, isolator="noop", agent_timeout=timeout
    ) as cluster:
        master, agent_id = cluster.master, cluster.agents[0].agent_id
        await wait_for(lambda: agent_id in master.cluster.agents, 10, "the agent to register")
        # The master falls behind: its heartbeat consumer stops (as under a backlog it reads too late).
        queue = next(q for q, channel in master._inbound if channel is wire.HEARTBEATS)
        consumer = next(t for t in master.bus._consumers if t.get_name() == f"master:{queue.name}")
        consumer.cancel()
        held = master.cluster.agents[agent_id]
        await wait_for(
            lambda: time.time() - held.last_seen > 3 * timeout, 15, "silence well past the timeout"
        )
        assert await master._unread_heartbeats() > 0
        assert master.cluster.agents.get(agent_id) is held, (
            "an agent whose heartbeats wait was taken for lost"
        )
        # Reading again, the master hears it.
        master.bus.consume(queue, wire.HEARTBEATS, master.dispatcher.handle)
        await wait_for(lambda: time.time() - held.last_seen < timeout, 10, "the queued heartbeats to be read")
        assert master.cluster.agents.get(agent_id) is held
        # A really silent agent is still lost.
        await cluster.agents[0].stop()
        await wait_for(lambda: agent_id not in master.cluster.agents, 15, "the stopped agent to be removed")
        assert agent_id in master.cluster.lost_agents
