"""The master holds its heartbeat rate: agents are told to beat slower as the cluster grows."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable

import pytest

from meseta.master import MasterService
from meseta.testing.local import local_cluster
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.e2e


async def test_agents_beat_as_slowly_as_the_master_tells_them(amqp_url: str, etcd_prefix: str) -> None:
    # One heartbeat a second for three agents: every 3 s each (their own interval is 0.5 s).
    async with local_cluster(amqp_url, etcd_prefix, agents=3, isolator="noop", heartbeat_rate=1.0) as cluster:
        await wait_for(lambda: all(a.told_interval == 3.0 for a in cluster.agents), 10, "agents told 3 s")
        assert all(a.heartbeat_interval == 3.0 for a in cluster.agents)
        # Silence of 4 intervals, not the configured 5 s, is what makes an agent lost now.
        assert cluster.master.core.pacer.timeout(5.0, time.time()) == 12.0

        # Heartbeats arrive every 3 s per agent, where 0.5 s would give two a second. The first after
        # being told comes at a random point of the new interval (agents told at once must not beat
        # together): gaps are counted from the second on.
        seen: dict[str, list[float]] = {a.agent_id: [] for a in cluster.agents}

        def record() -> bool:
            for agent_id, times in seen.items():
                last = cluster.master.cluster.agents[agent_id].last_seen
                if not times or times[-1] != last:
                    times.append(last)
            return all(len(t) >= 4 for t in seen.values())

        await wait_for(record, 30, "four heartbeats from each agent")
        gaps = [b - a for times in seen.values() for a, b in itertools.pairwise(times[2:])]
        assert gaps and min(gaps) > 2.5, gaps


async def test_a_new_master_keeps_the_interval_its_agents_were_told(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=3, isolator="noop", heartbeat_rate=1.0) as cluster:
        await wait_for(lambda: all(a.told_interval == 3.0 for a in cluster.agents), 10, "agents told 3 s")
        told: list[float] = []
        for agent in cluster.agents:
            heard = agent.told

            def spy(seconds: float, heard: Callable[[float], None] = heard) -> None:
                told.append(seconds)
                heard(seconds)

            agent.told = spy  # type: ignore[method-assign]  # records what every agent is told

        # Failover: the agents re-register one by one with the new master. Counting them as they come
        # (1, then 2 agents) it would tell all three to beat every 1 s, then 2 s.
        await cluster.master.stop()
        settings = dataclasses.replace(cluster.master.settings, name="second-master", api_port=None)
        second = MasterService(settings)
        await second.start()
        try:
            await wait_for(lambda: len(second.cluster.agents) == 3, 20, "agents re-registered")
            assert second.core.pacer.advertised == 3.0
            assert all(a.told_interval == 3.0 for a in cluster.agents)
            assert all(seconds == 3.0 for seconds in told), told
        finally:
            await second.stop()
