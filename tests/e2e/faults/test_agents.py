"""An agent declared lost comes back after a master failover: its tasks, which its frameworks were told
are LOST (and have replaced), are killed by the new leader too. Real RabbitMQ, etcd, dockerd."""

from __future__ import annotations

import pytest

from meseta.agent import AgentService
from meseta.sdk import wire
from meseta.testing.local import local_cluster, next_event, short_task, until_state
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.e2e


async def test_a_returning_agent_s_replaced_tasks_are_killed_under_a_new_master(
    amqp_url: str, etcd_prefix: str
) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=1, agent_timeout=2.0) as cluster:
        client = await cluster.framework("steady")
        await until_state(client, wire.TaskState.RUNNING, short_task("long", script="sleep 120"))
        agent = cluster.agents[0]
        await agent.stop()  # silent; its container runs on
        lost = await next_event(client, wire.Update, 30)
        while lost.status.task_id != "long" or lost.status.state != wire.TaskState.LOST:
            lost = await next_event(client, wire.Update, 30)
        assert lost.status.reason == wire.StatusReason.AGENT_REMOVED
        # A new leader: nothing soft survives, what it must know comes from etcd.
        await cluster.restart_master_and_allocator()
        back = cluster.agents[0] = AgentService(agent.settings)
        await back.start()  # recovers the task from its checkpoint, and re-registers with it
        await wait_for(lambda: not back.tasks, 30, "the replaced task to be killed")
        assert cluster.master.cluster.lost_agents == set()
        assert (client.framework_id, "long") not in cluster.master.cluster.tasks
