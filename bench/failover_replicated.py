"""Failover on the replicated stack: a three-node RabbitMQ cluster (quorum queues), a three-member etcd
cluster, two masters, two allocators, three agents, all real processes on this machine
(meseta.testing.replicas); a framework keeps launching short tasks. Each round SIGKILLs, in turn, the
RabbitMQ node that leads the most queues, etcd's leader and the leading master, measures, then brings the
node back (the same data) before the next kill. Writes bench/results/failover_replicated.json.

Two times per kill, from the SIGKILL (and, as a baseline, from a moment when nothing is killed):
- ``offers``: the first offer the framework receives afterwards (for the master: of the new leader's
  epoch; offers of a dead leader still in flight do not count);
- ``tasks``: the first task accepted after the kill that reaches RUNNING or ends: the whole path (offer,
  accept, launch, agent, status) works again.

    .venv/bin/python bench/failover_replicated.py --rounds 3
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
from collections.abc import Awaitable, Callable
from pathlib import Path

from failover import Load, leading, start, wait_until

from meseta.sdk import eventloop
from meseta.testing.processes import ProcessCluster
from meseta.testing.replicas import EtcdCluster, RabbitCluster, etcd_cluster, rabbit_cluster

RESULTS = Path(__file__).parent / "results" / "failover_replicated.json"
ENV = {"MESETA_HEARTBEAT_INTERVAL": "0.5", "MESETA_AGENT_TIMEOUT": "4", "MESETA_CONTAINER_RETENTION": "5"}


async def measure(load: Load, kill: Callable[[], Awaitable[int]], kind: str) -> dict[str, float]:
    """Kill (returning the epoch an offer must exceed to count), then wait for offers and tasks."""
    killed_at = time.time()
    epoch = await kill()
    await wait_until(lambda: load.offers_after(killed_at, epoch) is not None, 60, f"offers after the {kind}")
    await wait_until(lambda: load.tasks_after(killed_at) is not None, 60, f"tasks after the {kind}")
    offers, tasks = load.offers_after(killed_at, epoch), load.tasks_after(killed_at)
    assert offers is not None and tasks is not None
    print(f"{kind} killed: offers again after {offers:.2f} s, tasks after {tasks:.2f} s")
    return {"offers_s": round(offers, 3), "tasks_s": round(tasks, 3)}


async def rounds(
    root: Path, rabbit: RabbitCluster, etcd: EtcdCluster, count: int, lease_ttl: float
) -> dict[str, list[dict[str, float]]]:
    cluster = ProcessCluster(
        root / "logs",
        amqp_host=rabbit.hosts,
        management_url=rabbit.management().url,
        etcd_endpoint=etcd.endpoints,
        env={**ENV, "MESETA_LEASE_TTL": f"{lease_ttl:g}"},
    )
    results: dict[str, list[dict[str, float]]] = {
        "nothing": [],
        "rabbitmq_node": [],
        "etcd_leader": [],
        "leading_master": [],
    }
    async with cluster:
        # A leader that cannot refresh its lease while etcd elects steps down: it comes back a standby.
        cluster.restart_on_exit = ("master", "allocator")
        masters = itertools.count()
        client, load, loop = await start(cluster, masters, patience=60)
        try:
            await wait_until(lambda: len(load.started) >= 10, 60, "first tasks")
            for _ in range(count):

                async def kill_nothing() -> int:
                    return 0

                # The baseline: how soon the next offer and a task accepted now run with no fault at all.
                results["nothing"].append(await measure(load, kill_nothing, "nothing"))
                busiest, _n = rabbit.leaders(cluster.vhost).most_common(1)[0]
                (node,) = [n for n in rabbit.nodes if n.node == busiest]

                async def kill_node() -> int:
                    rabbit.kill(node)  # noqa: B023
                    cluster.management_url = rabbit.management().url
                    return 0

                results["rabbitmq_node"].append(await measure(load, kill_node, "RabbitMQ node"))
                await rabbit.restart(node)

                member = await etcd.leader()

                async def kill_member() -> int:
                    etcd.kill(member)  # noqa: B023
                    return 0

                results["etcd_leader"].append(await measure(load, kill_member, "etcd leader"))
                await etcd.restart(member)

                async def kill_master() -> int:
                    old = leading(cluster)
                    assert old is not None
                    epoch = max(e for _, e in load.offers)
                    await cluster.kill(old, signal.SIGKILL)
                    return epoch

                results["leading_master"].append(await measure(load, kill_master, "leading master"))
                await cluster.master(next(masters))  # a fresh standby
                await asyncio.sleep(3.0)  # let the returned nodes settle and load resume
        finally:
            loop.cancel()
            await client.close()
    return results


async def main(count: int, lease_ttl: float) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="meseta-failover-replicated-"))
    async with rabbit_cluster(root / "rabbitmq") as rabbit, etcd_cluster(root / "etcd") as etcd:
        await etcd.leader()
        results = await rounds(root, rabbit, etcd, count, lease_ttl)
    summary: dict[str, object] = {}
    for kind, runs in results.items():
        summary[kind] = {
            "runs": runs,
            "offers_median_s": statistics.median(r["offers_s"] for r in runs),
            "offers_max_s": max(r["offers_s"] for r in runs),
            "tasks_median_s": statistics.median(r["tasks_s"] for r in runs),
            "tasks_max_s": max(r["tasks_s"] for r in runs),
        }
    return {
        "rounds": count,
        "lease_ttl_s": lease_ttl,
        "topology": "3 RabbitMQ nodes (quorum queues), 3 etcd members, 2 masters, 2 allocators, 3 agents",
        "what": "SIGKILL of each kind of node -> first offer (new epoch for the master) and first task "
        "accepted after the kill running, at a framework",
        "kills": summary,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--lease-ttl",
        type=float,
        default=3,
        help="Masters' and allocators' lease TTL, s (2/3 of it must cover an etcd election: at 2 s here, "
        "losing etcd's leader often deposed the master).",
    )
    args = parser.parse_args()
    result = eventloop.run(main(args.rounds, args.lease_ttl))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["kills"], indent=2))
    print(f"-> {RESULTS}")
