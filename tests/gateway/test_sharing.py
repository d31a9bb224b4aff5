"""A framework through the gateway and one through the SDK share one cluster under DRF."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from meseta.runtime.defaults import TASK_IMAGE
from meseta.sdk import wire
from meseta.sdk.client import FrameworkClient
from meseta.testing.local import Cluster, local_cluster
from meseta.testing.mesos import Subscription, running_gateway, scalar, subscribe, task_info, url_of
from meseta.testing.waiting import wait_for

pytestmark = pytest.mark.timeout(180)

SLOTS = 8
"""Two agents of 2 cpus, 1024 MiB and 4096 MiB of disk; tasks of a quarter of each. A full agent has
nothing left to offer: a leftover (memory, say) offered to one framework would count in its share while
it holds the offer, and tilt where freed cpus go."""
TASK_SECONDS = 2
"""Short: as tasks end, DRF gives what they free to the framework with the lower share."""


async def sdk_framework(client: FrameworkClient, offers_seen: list[str]) -> None:
    """Launch one short task per offer (the rest goes back), for ever."""
    n = 0
    async for event in client.events():
        if isinstance(event, wire.Offers):
            for offer in event.offers:
                offers_seen.append(offer.offer_id)
                if not wire.Resources(cpus=0.5, mem=256, disk=1024).fits_in(offer.resources):
                    await client.decline([offer.offer_id], refuse_seconds=0)
                    continue
                n += 1
                task = wire.TaskInfo(
                    task_id=f"sdk-{n}",
                    resources=wire.Resources(cpus=0.5, mem=256, disk=1024),
                    container=wire.ContainerSpec.shell(TASK_IMAGE, f"sleep {TASK_SECONDS}"),
                )
                await client.accept([offer.offer_id], [task])


async def mesos_framework(sub: Subscription, offers_seen: list[str]) -> None:
    """The same, spoken as a Mesos framework: one task per OFFERS event's offer."""
    done = 0
    n = 0
    while True:
        event = await sub.wait(lambda e: e.get("type") == "OFFERS", 120, "offers", done)
        done = sub.events.index(event) + 1
        for offer in event["offers"]["offers"]:
            offers_seen.append(offer["id"]["value"])
            if scalar(offer, "cpus") < 0.5 or scalar(offer, "mem") < 256 or scalar(offer, "disk") < 1024:
                await sub.call("DECLINE", {"offer_ids": [offer["id"]], "filters": {"refuse_seconds": 0}})
                continue
            n += 1
            script = f"sleep {TASK_SECONDS}"
            task = task_info(f"mesos-{n}", offer["agent_id"]["value"], script, TASK_IMAGE, cpus=0.5, mem=256)
            task["resources"].append({"name": "disk", "type": "SCALAR", "scalar": {"value": 1024}})
            launch = {"type": "LAUNCH", "launch": {"task_infos": [task]}}
            await sub.call(
                "ACCEPT",
                {"offer_ids": [offer["id"]], "operations": [launch], "filters": {"refuse_seconds": 0}},
            )


def launches(cluster: Cluster) -> int:
    """Tasks launched by both frameworks so far (running, and ended ones the master still counts)."""
    return sum(f.stats.tasks_launched for f in cluster.master.cluster.frameworks.values())


async def test_gateway_and_sdk_frameworks_share_under_drf(amqp_url: str, etcd_prefix: str) -> None:
    async with (
        local_cluster(amqp_url, etcd_prefix, agents=2) as cluster,
        running_gateway(amqp_url, etcd_prefix) as gateway,
    ):
        sub = await subscribe(url_of(gateway), {"name": "mesos-side", "failover_timeout": 60})
        assert isinstance(sub, Subscription)
        client = await cluster.framework("sdk-side")
        mesos_offers: list[str] = []
        sdk_offers: list[str] = []
        loops = [
            asyncio.create_task(mesos_framework(sub, mesos_offers)),
            asyncio.create_task(sdk_framework(client, sdk_offers)),
        ]
        try:

            def running() -> dict[str, int]:
                """Tasks each framework holds resources for (launched, not ended): what DRF shares."""
                counts = {sub.framework_id: 0, client.framework_id or "": 0}
                for task in cluster.master.cluster.tasks.values():
                    if not task.state.terminal and task.framework_id in counts:
                        counts[task.framework_id] += 1
                return counts

            await wait_for(lambda: sum(running().values()) == SLOTS, 90, "the cluster full of both")
            assert mesos_offers and sdk_offers
            # Whoever answered its first offers faster may hold more at first; as tasks end, DRF moves the
            # freed slots to the other. After a few task lifetimes, each holds half the cluster on average.
            # Every slot freed and given out again twice since the first fill (each framework numbers its
            # tasks: the highest numbers say how many were launched).
            await wait_for(lambda: launches(cluster) >= 3 * SLOTS, 90, "slots freed and given out again")
            samples = []
            for _ in range(40):
                samples.append(running())
                await asyncio.sleep(0.2)
            mean = {f: sum(s[f] for s in samples) / len(samples) for f in samples[0]}
            assert all(abs(m - SLOTS / 2) <= 1.0 for m in mean.values()), (mean, samples)
        finally:
            for loop in loops:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await loop
            await sub.call("TEARDOWN")
            await sub.close()
