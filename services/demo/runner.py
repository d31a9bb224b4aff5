"""``meseta demo``: a master, an allocator and three agents as processes, two frameworks sharing them.

Everything the demo starts it also stops: processes, containers, its vhost and its etcd keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import docker
from rich.console import Console
from rich.live import Live
from rich.table import Table

from meseta.agent.containerizer import LABEL_CLUSTER
from meseta.examples.batch import BatchJob
from meseta.examples.common import TrackedScheduler
from meseta.examples.service import ServiceApp
from meseta.runtime.etcd import EtcdStore
from meseta.runtime.rabbitmq import Management
from meseta.sdk import FrameworkClient, offer_cycle_percentiles, run

AGENTS = (
    ("host-a", {"rack": "r1", "zone": "east"}),
    ("host-b", {"rack": "r1", "zone": "west"}),
    ("host-c", {"rack": "r2", "zone": "west", "disk": "ssd"}),
)
STATES = ("STAGING", "STARTING", "RUNNING", "FINISHED", "FAILED", "KILLED", "LOST", "ERROR")


@dataclass
class Demo:
    """Names and places of one demo run."""

    run_id: str
    amqp_host: str
    etcd_endpoint: str
    log_dir: Path

    @property
    def vhost(self) -> str:
        return f"meseta-{self.run_id}"

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{self.amqp_host}/{self.vhost}"

    @property
    def etcd_prefix(self) -> str:
        return f"/meseta-{self.run_id}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MESETA_AMQP_URL": self.amqp_url,
            "MESETA_ETCD_ENDPOINT": self.etcd_endpoint,
            "MESETA_ETCD_PREFIX": self.etcd_prefix,
            "MESETA_CLUSTER": self.run_id,
        }


async def _spawn(demo: Demo, name: str, *args: str) -> asyncio.subprocess.Process:
    log = (demo.log_dir / f"{name}.log").open("wb")
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meseta.cli",
        *args,
        env=demo.env(),
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )


@contextlib.asynccontextmanager
async def services(demo: Demo) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Start allocator, master and agents as processes; stop them and clean up afterwards."""
    await asyncio.to_thread(Management().create_vhost, demo.vhost)
    procs: list[asyncio.subprocess.Process] = []
    try:
        procs.append(await _spawn(demo, "allocator", "allocator"))
        procs.append(await _spawn(demo, "master", "master"))
        for i, (hostname, attributes) in enumerate(AGENTS):
            flags = [f"--attribute={k}={v}" for k, v in attributes.items()]
            procs.append(
                await _spawn(
                    demo,
                    f"agent-{i}",
                    "agent",
                    f"--agent-id={demo.run_id}-agent-{i}",
                    f"--hostname={hostname}",
                    "--cpus=2",
                    "--mem=1024",
                    *flags,
                )
            )
        yield procs
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
        await asyncio.to_thread(_remove_containers, demo.run_id)
        await asyncio.to_thread(Management().delete_vhost, demo.vhost)
        store = EtcdStore(demo.etcd_endpoint, demo.etcd_prefix)
        with contextlib.suppress(Exception):
            await store.connect()
            await store.delete_prefix()
        await store.close()


def _remove_containers(run_id: str) -> None:
    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={run_id}"}):
        container.remove(force=True)
    client.close()


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
    await asyncio.to_thread(log_dir.mkdir, parents=True, exist_ok=True)
    demo = Demo(
        run_id,
        os.environ.get("MESETA_AMQP_HOST", "127.0.0.1:5672"),
        os.environ.get("MESETA_ETCD_ENDPOINT", "127.0.0.1:2379"),
        log_dir,
    )
    console.print(
        f"[bold]Meseta demo[/] {run_id}: 1 allocator, 1 master, {len(AGENTS)} agents; logs in {log_dir}"
    )
    reduces = max(1, batch_tasks // 5)
    batch = BatchJob([host for host, _ in AGENTS], maps=batch_tasks - reduces, reduces=reduces, image=image)
    service = ServiceApp(instances=service_tasks, image=image)
    batch_client = FrameworkClient(demo.amqp_url, "batch")
    service_client = FrameworkClient(demo.amqp_url, "service")
    clients: list[tuple[FrameworkClient, TrackedScheduler]] = [
        (batch_client, batch),
        (service_client, service),
    ]
    started = time.monotonic()
    ok = False
    loops: list[asyncio.Task[None]] = []
    async with services(demo) as procs:
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
            dead = [p for p in procs if p.returncode is not None]
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
