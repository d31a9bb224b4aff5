"""``meseta example NAME``: run one example framework against a cluster until it is done."""

from __future__ import annotations

import asyncio
import contextlib

from meseta.examples.batch import BatchJob
from meseta.examples.common import TrackedScheduler
from meseta.examples.gang import GangJob
from meseta.examples.service import ServiceApp
from meseta.sdk import FrameworkClient, run

EXAMPLES = ("batch", "gang", "service")


def build(name: str, hosts: list[str], size: int, delay: float) -> TrackedScheduler:
    """The scheduler of an example."""
    if name == "batch":
        return BatchJob(hosts, delay=delay)
    if name == "gang":
        return GangJob(size=size)
    if name == "service":
        return ServiceApp(instances=size)
    raise ValueError(f"unknown example {name!r}; known: {', '.join(EXAMPLES)}")


async def run_example(
    name: str, amqp_url: str, hosts: list[str], size: int, delay: float, timeout: float, hold: float
) -> str:
    """Run until the example is done (a service: up, then held ``hold`` seconds and scaled to 0)."""
    scheduler = build(name, hosts, size, delay)
    filters = scheduler.filters() if isinstance(scheduler, ServiceApp) else None
    aware = isinstance(scheduler, ServiceApp) and scheduler.partition_aware
    client = FrameworkClient(amqp_url, name, filters=filters, partition_aware=aware)
    await client.subscribe(timeout=30)
    loop = asyncio.create_task(run(client, scheduler))
    try:
        async with asyncio.timeout(timeout):
            await scheduler.done.wait()
            if isinstance(scheduler, ServiceApp):
                await asyncio.sleep(hold)
                await scheduler.scale(client, 0)
                await scheduler.done.wait()
    finally:
        with contextlib.suppress(Exception):
            await client.teardown()
        await client.close()
        loop.cancel()
    if isinstance(scheduler, BatchJob):
        report = scheduler.report()
        return (
            f"batch: {report.maps} maps, {report.reduces} reduces in {report.seconds:.1f} s, "
            f"locality {report.locality:.0%}"
        )
    if isinstance(scheduler, GangJob):
        return (
            f"gang: {scheduler.gang.size} ranks together, {len(scheduler.launches)} launch(es), "
            f"{scheduler.releases} release(s)"
        )
    return f"service: {size} instances were up; states {dict(scheduler.counts())}"
