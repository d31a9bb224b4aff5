"""The seeds' frameworks on a real 3-agent cluster: locality, gangs, services, and all three together."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator

import pytest

from meseta.examples.batch import BatchJob
from meseta.examples.common import TrackedScheduler
from meseta.examples.gang import GangJob
from meseta.examples.service import ServiceApp
from meseta.sdk import FrameworkClient, Resources, run, wire
from meseta.testing.local import Cluster, local_cluster, next_event
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.e2e

HOSTS = ["host-0", "host-1", "host-2"]


async def start(
    cluster: Cluster, name: str, scheduler: TrackedScheduler, **kwargs: object
) -> FrameworkClient:
    client = await cluster.framework(name, **kwargs)  # type: ignore[arg-type]
    _running.append(asyncio.create_task(run(client, scheduler)))
    return client


_running: list[asyncio.Task[None]] = []


@pytest.fixture(autouse=True)
def _cancel_loops() -> Iterator[None]:
    yield
    for task in _running:
        task.cancel()
    _running.clear()


async def test_batch_locality_with_and_without_delay_scheduling(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=3) as cluster:
        reports = {}
        for delay in (3.0, 0.0):
            job = BatchJob(HOSTS, maps=24, reduces=3, delay=delay, task_seconds=0.3)
            await start(cluster, f"batch-delay-{delay:g}", job)
            await asyncio.wait_for(job.done.wait(), 90)
            assert job.counts() == {"FINISHED": 27}
            reports[delay] = job.report()
        print(
            f"locality with a 3 s delay: {reports[3.0].locality:.0%} in {reports[3.0].seconds:.1f} s; "
            f"without: {reports[0.0].locality:.0%} in {reports[0.0].seconds:.1f} s"
        )
        assert reports[3.0].locality >= 0.95
        assert reports[0.0].locality <= reports[3.0].locality - 0.2


async def test_gang_launches_whole_or_not_at_all(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=3) as cluster:
        gang = GangJob(size=4, slot=Resources(cpus=1, mem=32), task_seconds=1.0)
        await start(cluster, "mpi", gang)
        await asyncio.wait_for(gang.done.wait(), 60)
        assert [count for _, count in gang.launches] == [4]
        ranks = [t for t in gang.states if t.startswith("rank-0-")]
        assert len(ranks) == 4 and all(gang.states[t] == wire.TaskState.FINISHED for t in ranks)
        starts = [gang.first_seen[t][wire.TaskState.STARTING] for t in ranks]
        running = [gang.first_seen[t][wire.TaskState.RUNNING] for t in ranks]
        # All ranks started together, and every rank was running before any finished.
        assert max(starts) - min(starts) < 1.0
        assert max(running) < min(gang.first_seen[t][wire.TaskState.FINISHED] for t in ranks)


async def test_a_gang_that_cannot_form_releases_what_it_holds(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=3) as cluster:
        # 8 one-cpu slots on 6 cpus: it can never form.
        gang = GangJob(size=8, slot=Resources(cpus=1, mem=32), timeout=1.0)
        client = await start(cluster, "too-big", gang)
        await wait_for(lambda: gang.gang.slots_held == 6, 20, "the gang to hold the whole cluster")
        other = await cluster.framework("waiting")
        offer = (await next_event(other, wire.Offers, timeout=15)).offers[0]
        assert offer.resources.cpus == 2  # a whole agent: released by the gang
        assert gang.releases >= 1 and gang.launches == []
        assert client.stats.tasks_launched == 0
        assert client.stats.offers_declined >= 3


async def test_service_restores_its_instances_after_an_agent_dies(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=3, agent_timeout=1.5) as cluster:
        service = ServiceApp(instances=2)
        client = await start(cluster, "web", service)
        await asyncio.wait_for(service.done.wait(), 30)
        before = dict(service.placed)
        assert len(set(before.values())) == 2  # spread: one per agent
        victim_task, victim_agent = sorted(before.items())[0]
        await next(a for a in cluster.agents if a.agent_id == victim_agent).stop()

        await wait_for(lambda: service.lost_agents == [victim_agent], 15, "the agent-lost event")
        await wait_for(lambda: service.states.get(victim_task) == wire.TaskState.LOST, 10, "the LOST update")
        await wait_for(lambda: service.running == 2 and len(service.placed) == 2, 30, "two instances again")
        assert victim_agent not in service.placed.values()
        assert [(t, s) for t, s, _ in service.replaced] == [(victim_task, wire.TaskState.LOST)]
        # Scaling works both ways.
        await service.scale(client, 1)
        await asyncio.wait_for(service.done.wait(), 30)
        assert service.running == 1


async def test_all_three_share_one_cluster(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=3) as cluster:
        batch = BatchJob(HOSTS, maps=12, reduces=3, delay=2.0, task_seconds=0.3)
        gang = GangJob(size=3, slot=Resources(cpus=0.5, mem=32), task_seconds=1.0, timeout=3.0)
        service = ServiceApp(instances=2)
        for name, scheduler in (("batch", batch), ("gang", gang), ("service", service)):
            await start(cluster, name, scheduler)
        await asyncio.wait_for(asyncio.gather(batch.done.wait(), gang.done.wait(), service.done.wait()), 120)
        assert batch.counts() == {"FINISHED": 15}
        assert gang.counts()["FINISHED"] == 3
        assert service.running == 2 and len(service.ready) == 2
        assert not service.replaced  # every copy served and passed its checks: none ended unasked

        # Every copy placed, the service asks for no more offers (the master says so).
        def suppressed() -> bool:
            return any(f.suppressed for f in cluster.master.state().frameworks if f.name == "service")

        await wait_for(suppressed, 10, "the service's offers suppressed")


async def test_meseta_example_runs_from_the_command_line(amqp_url: str, etcd_prefix: str) -> None:
    async with local_cluster(amqp_url, etcd_prefix, agents=3):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "meseta.cli",
            "example",
            "gang",
            "--size",
            "3",
            "--timeout",
            "60",
            env={**os.environ, "MESETA_AMQP_URL": amqp_url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, out.decode()
    assert "gang: 3 ranks together, 1 launch(es)" in out.decode()
