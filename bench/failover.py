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
from collections.abc import Callable, Iterator
from pathlib import Path

from meseta.sdk import FrameworkClient, eventloop, wire
from meseta.sdk.helpers import first_fit
from meseta.testing.processes import ProcessCluster

RESULTS = Path(__file__).parent / "results" / "failover.json"
ENV = {"MESETA_HEARTBEAT_INTERVAL": "0.5", "MESETA_CONTAINER_RETENTION": "5"}


class Load:
    """A framework launching a stream of short tasks on whatever it is offered; it keeps the times."""

    def __init__(self, client: FrameworkClient) -> None:
        self.client = client
        self.offers: list[tuple[float, int]] = []
        """(when, the newest leader epoch heard) of each offer event."""
        self.accepted: dict[str, float] = {}
        self.started: list[tuple[float, str]] = []
        self._ids = itertools.count()

    async def run(self) -> None:
        async for event in self.client.events():
            if isinstance(event, wire.Offers):
                self.offers.append((time.time(), self.client._bus.epochs_accepted[-1]))
                for offer in event.offers:
                    tasks = [
                        wire.TaskInfo(
                            task_id=f"t-{next(self._ids)}",
                            resources=wire.Resources(cpus=0.5, mem=16),
                            container=wire.ContainerSpec.shell("meseta-task:latest", "sleep 0.5"),
                        )
                        for _ in range(4)
                    ]
                    chosen = first_fit(offer, tasks)
                    if chosen:
                        now = time.time()
                        self.accepted.update((t.task_id, now) for t in chosen)
                        await self.client.accept([offer.offer_id], chosen)
                    else:
                        await self.client.decline([offer.offer_id], refuse_seconds=0)
            elif isinstance(event, wire.Update) and (
                event.status.state == wire.TaskState.RUNNING or event.status.state.terminal
            ):
                self.started.append((time.time(), event.status.task_id))

    def offers_after(self, since: float, epoch: int = 0) -> float | None:
        later = [t for t, e in self.offers if t > since and e > epoch]
        return min(later) - since if later else None

    def tasks_after(self, since: float) -> float | None:
        later = [t for t, task in self.started if self.accepted.get(task, 0) > since]
        return min(later) - since if later else None


def leading(cluster: ProcessCluster) -> str | None:
    alive = [n for n, p in cluster.procs.items() if n.startswith("master") and p.returncode is None]
    leaders = [n for n in alive if "leads master" in cluster.log(n, current=True)]
    return leaders[-1] if leaders else None


async def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout} s")
        await asyncio.sleep(0.02)


async def start(
    cluster: ProcessCluster, masters: Iterator[int], patience: float
) -> tuple[FrameworkClient, Load, asyncio.Task[None]]:
    """Two allocators, two masters (numbered from ``masters``), three agents, and a framework running
    :class:`Load` once a master leads."""
    for i in range(2):
        await cluster.allocator(i)
        await cluster.master(next(masters))
    for i in range(3):
        await cluster.agent(i, f"host-{i}", "--cpus=2", "--mem=2048")
    await wait_until(lambda: leading(cluster) is not None, patience, "a leading master")
    client = FrameworkClient(cluster.amqp_url, "load")
    await client.subscribe(timeout=patience)
    load = Load(client)
    return client, load, asyncio.create_task(load.run())


async def main(kills: int) -> dict[str, object]:
    async with ProcessCluster(Path(tempfile.mkdtemp(prefix="meseta-failover-")), env=ENV) as cluster:
        masters = itertools.count()
        client, load, loop = await start(cluster, masters, patience=30)
        recoveries: list[float] = []
        try:
            await wait_until(lambda: len(load.offers) >= 5, 30, "offers")
            for n in range(kills):
                old = leading(cluster)
                assert old is not None
                old_epoch = load.offers[-1][1]
                killed_at = time.time()
                await cluster.kill(old, signal.SIGKILL)
                await wait_until(lambda: load.offers_after(killed_at, old_epoch) is not None, 30, "offers")  # noqa: B023
                recovery = load.offers_after(killed_at, old_epoch)
                assert recovery is not None
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
