"""``meseta demo``: a master, an allocator and three agents as processes, two frameworks sharing them.

Everything the demo starts it also stops: processes, containers, its vhost and its etcd keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from meseta.examples.batch import BatchJob
from meseta.examples.common import TrackedScheduler
from meseta.examples.service import ServiceApp
from meseta.ops import tables
from meseta.ops.state_client import NoLeader, fetch_state
from meseta.sdk import FrameworkClient, offer_cycle_percentiles, run
from meseta.testing.processes import ProcessCluster

AGENTS = (
    ("host-a", {"rack": "r1", "zone": "east"}),
    ("host-b", {"rack": "r1", "zone": "west"}),
    ("host-c", {"rack": "r2", "zone": "west", "disk": "ssd"}),
)
STATES = ("STAGING", "STARTING", "RUNNING", "FINISHED", "FAILED", "KILLED", "LOST", "ERROR")


async def start_cluster(cluster: ProcessCluster) -> None:
    """One allocator, one master, and the three agents, as processes."""
    await cluster.allocator(0)
    await cluster.master(0)
    for i, (hostname, attributes) in enumerate(AGENTS):
        flags = [f"--attribute={k}={v}" for k, v in attributes.items()]
        # Ports of its own: the service's copies publish theirs on this one host.
        ports = f"--ports={21000 + 1000 * i}-{21999 + 1000 * i}"
        await cluster.agent(i, hostname, "--cpus=2", "--mem=1024", ports, *flags)


def _live_table(clients: list[tuple[FrameworkClient, TrackedScheduler]], started: float) -> Table:
    table = Table(title=f"Meseta demo — {time.monotonic() - started:5.1f} s")
    table.add_column("framework")
    for state in STATES:
        table.add_column(state, justify="right")
    table.add_column("offers in/acc/dec", justify="right")
    for client, scheduler in clients:
        counts = scheduler.counts()
        s = client.stats
        table.add_row(
            client.name,
            *(str(counts.get(state, 0) or "") for state in STATES),
            f"{s.offers_received}/{s.offers_accepted}/{s.offers_declined}",
        )
    return table


def summary(clients: list[tuple[FrameworkClient, TrackedScheduler]], elapsed: float) -> Table:
    """The closing table: tasks by state, offers, offer-cycle latency."""
    table = Table(title=f"Meseta demo summary ({elapsed:.1f} s)")
    for column in (
        "framework",
        "tasks by state",
        "offers sent",
        "accepted",
        "declined",
        "rescinded",
        "cycle p50 ms",
        "cycle p99 ms",
    ):
        table.add_column(column, justify="left" if column in ("framework", "tasks by state") else "right")
    samples: list[float] = []
    for client, scheduler in clients:
        s = client.stats
        samples += s.cycle_seconds
        p50, p99 = offer_cycle_percentiles(s.cycle_seconds)
        states = ", ".join(f"{k} {v}" for k, v in sorted(scheduler.counts().items()))
        table.add_row(
            client.name,
            states,
            str(s.offers_received),
            str(s.offers_accepted),
            str(s.offers_declined),
            str(s.offers_rescinded),
            f"{p50:.1f}",
            f"{p99:.1f}",
        )
    p50, p99 = offer_cycle_percentiles(samples)
    table.add_row("all", f"{len(samples)} launches", "", "", "", "", f"{p50:.1f}", f"{p99:.1f}", style="bold")
    return table


async def run_demo(batch_tasks: int, service_tasks: int, image: str, timeout: float) -> int:
    """Run the whole demo; 0 when every batch task finished and the service came up and went down."""
    console = Console(width=None if sys.stdout.isatty() else 132)
    run_id = f"demo-{uuid.uuid4().hex[:8]}"
    log_dir = Path(os.environ.get("MESETA_DEMO_LOGS", f".run/{run_id}"))
    cluster = ProcessCluster(
        log_dir,
        run_id,
        amqp_host=os.environ.get("MESETA_AMQP_HOST", "127.0.0.1:5672"),
        etcd_endpoint=os.environ.get("MESETA_ETCD_ENDPOINT", "127.0.0.1:2379"),
        # The demo is not about failover: a roomy lease keeps a busy machine from deposing its one master.
        env={"MESETA_LEASE_TTL": os.environ.get("MESETA_LEASE_TTL", "3")},
        # As in production: every process and framework logs in as its own principal (docs/SECURITY.md).
        principals=("batch", "service"),
    )
    console.print(
        f"[bold]Meseta demo[/] {run_id}: 1 allocator, 1 master, {len(AGENTS)} agents, each its own "
        f"broker principal; logs in {log_dir}"
    )
    reduces = max(1, batch_tasks // 5)
    batch = BatchJob([host for host, _ in AGENTS], maps=batch_tasks - reduces, reduces=reduces, image=image)
    service = ServiceApp(instances=service_tasks, image=image)
    clients: list[tuple[FrameworkClient, TrackedScheduler]] = []
    started = time.monotonic()
    ok = False
    loops: list[asyncio.Task[None]] = []
    async with cluster:
        # The frameworks' users exist once the cluster is entered (provisioned).
        batch_client = FrameworkClient(cluster.framework_url("batch"), "batch")
        service_client = FrameworkClient(
            cluster.framework_url("service"), "service", partition_aware=ServiceApp.partition_aware
        )
        clients += [(batch_client, batch), (service_client, service)]
        await start_cluster(cluster)
        console.print(
            f"state API and live web page: {cluster.apis[0]}/ (meseta status --api {cluster.apis[0]})"
        )
        try:
            async with asyncio.timeout(timeout):
                for client, _ in clients:
                    await client.subscribe(timeout=60)
                loops += [asyncio.create_task(run(c, s)) for c, s in clients]
                with Live(_live_table(clients, started), console=console, refresh_per_second=4) as live:

                    async def refresh() -> None:
                        while True:
                            live.update(_live_table(clients, started))
                            await asyncio.sleep(0.25)

                    refresher = asyncio.create_task(refresh())
                    await asyncio.gather(batch.done.wait(), service.done.wait())
                    await service.scale(service_client, 0)
                    await service.done.wait()
                    refresher.cancel()
                    live.update(_live_table(clients, started))
                with contextlib.suppress(NoLeader):
                    state = await asyncio.to_thread(fetch_state, cluster.apis)
                    console.print()
                    console.print(tables.frameworks(state))
                ok = (
                    batch.counts() == {"FINISHED": batch_tasks}
                    and service.counts().get("KILLED") == service_tasks
                )
        except TimeoutError:
            console.print(f"[red]demo timed out after {timeout} s[/]; see logs in {log_dir}")
        finally:
            for client, _ in clients:
                if client.framework_id is not None:
                    with contextlib.suppress(Exception):
                        await client.teardown()
                await client.close()
            dead = [p for p in cluster.procs.values() if p.returncode is not None]
            if dead:
                console.print(f"[red]{len(dead)} service process(es) exited early; see {log_dir}[/]")
            for loop in loops:
                loop.cancel()
    console.print(summary(clients, time.monotonic() - started))
    report = batch.report()
    console.print(
        f"batch data locality: {report.local_maps}/{report.maps} maps ran where their block is "
        f"({report.locality:.0%}), job completed in {report.seconds:.1f} s"
    )
    console.print("[green]demo finished[/]" if ok else "[red]demo did not complete[/]")
    return 0 if ok else 1
