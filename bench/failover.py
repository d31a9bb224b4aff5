"""Master failover under load: kill the leader again and again, measure how soon offers flow again.

Two masters (and a third started after every kill, so a standby always waits), two allocators, three
agents, all real processes; a framework keeps launching short tasks. Recovery time = from the SIGKILL to
the first offer the framework receives afterwards. Writes bench/results/failover.json.

    .venv/bin/python bench/failover.py --kills 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import statistics
import tempfile
import time
from pathlib import Path

from meseta.sdk import FrameworkClient, eventloop, wire
from meseta.sdk.helpers import first_fit
from meseta.testing.processes import ProcessCluster

RESULTS = Path(__file__).parent / "results" / "failover.json"
ENV = {"MESETA_HEARTBEAT_INTERVAL": "0.5", "MESETA_CONTAINER_RETENTION": "5"}


def leading(cluster: ProcessCluster) -> str | None:
    alive = [n for n, p in cluster.procs.items() if n.startswith("master") and p.returncode is None]
    leaders = [n for n in alive if "leads master" in cluster.log(n)]
    return leaders[-1] if leaders else None


async def workload(client: FrameworkClient, offer_times: list[tuple[float, int]]) -> None:
    """Launch a stream of short tasks on whatever is offered."""
    ids = itertools.count()
    async for event in client.events():
        if isinstance(event, wire.Offers):
            # Tagged with the newest leader epoch the framework has heard: in-flight offers of a dead
            # leader do not count as recovery.
            offer_times.append((time.time(), client._bus.epochs_accepted[-1]))
            for offer in event.offers:
                tasks = [
                    wire.TaskInfo(
                        task_id=f"t-{next(ids)}",
                        resources=wire.Resources(cpus=0.5, mem=16),
                        container=wire.ContainerSpec.shell("meseta-task:latest", "sleep 0.5"),
                    )
                    for _ in range(4)
                ]
                chosen = first_fit(offer, tasks)
                if chosen:
                    await client.accept([offer.offer_id], chosen)
                else:
                    await client.decline([offer.offer_id], refuse_seconds=0)


async def wait_until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


async def main(kills: int) -> dict[str, object]:
    async with ProcessCluster(Path(tempfile.mkdtemp(prefix="meseta-failover-")), env=ENV) as cluster:
        masters = itertools.count()
        for i in range(2):
            await cluster.allocator(i)
            await cluster.master(next(masters))
        for i in range(3):
            await cluster.agent(i, f"host-{i}", "--cpus=2", "--mem=2048")
        await wait_until(lambda: leading(cluster) is not None, 30)
        client = FrameworkClient(cluster.amqp_url, "load")
        await client.subscribe(timeout=30)
        offer_times: list[tuple[float, int]] = []
        loop = asyncio.create_task(workload(client, offer_times))
        recoveries: list[float] = []
        try:
            await wait_until(lambda: len(offer_times) >= 5, 30)
            for n in range(kills):
                old = leading(cluster)
                assert old is not None
                old_epoch = offer_times[-1][1]
                killed_at = time.time()
                await cluster.kill(old, signal.SIGKILL)
                await wait_until(lambda: any(e > old_epoch for _, e in offer_times), 30)  # noqa: B023
                recovery = min(t for t, e in offer_times if e > old_epoch) - killed_at
                recoveries.append(round(recovery, 3))
                print(f"kill {n + 1}: offers again after {recovery:.2f} s")
                await cluster.master(next(masters))  # a fresh standby
                await asyncio.sleep(2.0)  # let the new standby settle and load resume
        finally:
            loop.cancel()
            await client.close()
    return {
        "kills": kills,
        "recoveries_s": recoveries,
        "median_s": statistics.median(recoveries),
        "max_s": max(recoveries),
        "lease_ttl_s": 1,
        "what": "SIGKILL of the leading master -> first offer from the new leader's epoch at a framework",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    result = eventloop.run(main(args.kills))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"median recovery {result['median_s']:.2f} s over {args.kills} kills -> {RESULTS}")
