"""Meseta beside the schedulers users would pick instead, on the same jobs, in one run: Slurm (slurmctld
and slurmd on this one node, Debian's slurm-wlm 22.05 with munge) and Docker Swarm (the local engine as
a one-node swarm), each brought up and torn down by this script, and the floor each job has (a bare
fork/exec; a bare create-and-start through the Docker API).

    ../.venv/bin/python peers.py [--jobs 1000] [--containers 200] [--in-a-row 100] [--concurrency 8]

- W1: ``--jobs`` short jobs (``true``), all submitted at once: makespan, submit -> start p50/p99. Meseta
  (process isolator), Slurm (one ``sbatch --array`` and, separately, one ``sbatch`` per job), the floor.
- W2: ``--containers`` short containers (the task image, ``true``), all at once: makespan, submit ->
  running p50/p99. Meseta (Docker isolator), Swarm (a replicated-job of that many completions), the
  floor (the Docker API, ``--concurrency`` at a time).
- W3: one job at a time on an idle cluster, ``--in-a-row`` times: submit -> running p50/p99. Meseta with
  an SDK framework holding no offer (it revives and waits) and holding one, Slurm (``srun``), Swarm.

Every figure is also given as a ratio to the floor, with the CPU seconds each system's daemons spent. A
peer that cannot run here is reported with the reason. Writes ``results/peers.json`` and ``peers.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import docker
from harness import RESULTS, broker_pids, cpu_by_pid, cpu_used, pids_of, summary, write_result

from meseta.runtime.defaults import TASK_IMAGE
from meseta.sdk import FrameworkClient, wire
from meseta.testing.processes import ProcessCluster

Figures = dict[str, Any]


class Unavailable(Exception):
    """A peer that cannot run here; the text says why."""


def latencies(submitted: float, starts: list[float], ends: list[float]) -> Figures:
    """submit -> start (ms) and the makespan (s) of one workload, from wall-clock times."""
    figures: Figures = summary([(s - submitted) * 1000 for s in starts])
    figures["makespan_s"] = round(max(ends) - submitted, 3) if ends else float("nan")
    figures["jobs"] = len(starts)
    return figures


# --- the floors --------------------------------------------------------------------------------------------


async def floor_fork(jobs: int) -> Figures:
    """W1's floor: ``jobs`` fork/execs of ``true`` at once."""
    submitted = time.time()
    starts: list[float] = []
    procs = []
    for _ in range(jobs):
        procs.append(await asyncio.create_subprocess_exec("true"))
        starts.append(time.time())
    await asyncio.gather(*(p.wait() for p in procs))
    return latencies(submitted, starts, [time.time()])


def _started_at(container: Any) -> float:
    container.reload()
    return parse_time(container.attrs["State"]["StartedAt"])


def parse_time(text: str) -> float:
    """Docker's RFC 3339 times (nanoseconds, ``Z``) as epoch seconds."""
    base, _, fraction = text.rstrip("Z").partition(".")
    when = datetime.datetime.fromisoformat(base).replace(tzinfo=datetime.UTC).timestamp()
    return when + float(f"0.{fraction or '0'}")


async def floor_docker(containers: int, concurrency: int, label: str) -> Figures:
    """W2's floor: create and start the containers through the Docker API, ``concurrency`` at a time."""
    client = docker.from_env()
    submitted = time.time()
    limit = asyncio.Semaphore(concurrency)
    starts: list[float] = []
    ends: list[float] = []

    async def one() -> None:
        async with limit:
            made = await asyncio.to_thread(
                client.containers.run, TASK_IMAGE, ["true"], detach=True, labels={"meseta.peers": label}
            )
            starts.append(await asyncio.to_thread(_started_at, made))
            await asyncio.to_thread(made.wait)
            ends.append(time.time())

    try:
        await asyncio.gather(*(one() for _ in range(containers)))
    finally:
        await asyncio.to_thread(_remove_labelled, client, label)
        client.close()
    return latencies(submitted, starts, ends)


def _remove_labelled(client: docker.DockerClient, label: str) -> None:
    for container in client.containers.list(all=True, filters={"label": f"meseta.peers={label}"}):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)


# --- Meseta -------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def meseta(isolator: str, cpus: float) -> AsyncIterator[ProcessCluster]:
    log_dir = Path(tempfile.mkdtemp(prefix="meseta-peers-"))
    async with ProcessCluster(log_dir, env={"MESETA_LOG_LEVEL": "WARNING"}) as cluster:
        await cluster.allocator(0)
        await cluster.master(0)
        await cluster.agent(
            0, socket.gethostname(), f"--isolator={isolator}", f"--cpus={cpus}", "--mem=65536"
        )
        yield cluster


def meseta_daemons(cluster: ProcessCluster) -> dict[str, list[int]]:
    return {"meseta": [p.pid for p in cluster.procs.values()], "broker": broker_pids()}


def job(task_id: str, image: str, cpus: float) -> wire.TaskInfo:
    return wire.TaskInfo(
        task_id=task_id,
        resources=wire.Resources(cpus=cpus, mem=16),  # Docker's floor is 6 MB
        container=wire.ContainerSpec(image=image, command=("true",)),
    )


async def meseta_burst(cluster: ProcessCluster, jobs: int, image: str, cpus: float) -> Figures:
    """All ``jobs`` submitted at once to an SDK framework that packs every offer full."""
    client = FrameworkClient(cluster.amqp_url, "peers-burst")
    await client.subscribe(timeout=60)
    pending = [job(f"j{i}", image, cpus) for i in range(jobs)]
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    submitted = time.time()
    try:
        async for event in client.events():
            if isinstance(event, wire.Offers):
                for offer in event.offers:
                    room = int(offer.resources.cpus // cpus + 1e-9)
                    batch, pending = pending[:room], pending[room:]
                    if batch:
                        await client.accept([offer.offer_id], batch)
                    else:
                        await client.decline([offer.offer_id], refuse_seconds=1)
            elif isinstance(event, wire.Update):
                status = event.status
                if status.state == wire.TaskState.RUNNING:
                    starts.setdefault(status.task_id, status.timestamp)
                elif status.state.terminal:
                    if status.state != wire.TaskState.FINISHED:
                        raise RuntimeError(f"{status.task_id} {status.state}: {status.message}")
                    ends[status.task_id] = status.timestamp
                    # A job too quick to be seen RUNNING started no later than it ended.
                    starts.setdefault(status.task_id, status.timestamp)
                    if len(ends) == jobs:
                        break
    finally:
        await client.teardown()
        await client.close()
    return latencies(submitted, list(starts.values()), list(ends.values()))


async def meseta_in_a_row(cluster: ProcessCluster, times: int, hold: bool) -> Figures:
    """One job at a time: a framework holding an offer launches at once; one holding none revives first
    (it had suppressed offers and given back every offer while idle) and launches on the first offer."""
    client = FrameworkClient(cluster.amqp_url, f"peers-row-{'hold' if hold else 'idle'}")
    await client.subscribe(timeout=60)
    # Pumped into a queue of our own: waiting on it with a time limit is safe (cancelling the SDK's
    # iterator mid-wait would end it).
    events: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        async for event in client.events():
            events.put_nowait(event)

    pumping = asyncio.create_task(pump())
    samples: list[float] = []

    async def next_offer() -> wire.Offer:
        while True:
            event = await events.get()
            if isinstance(event, wire.Offers):
                return event.offers[0]

    async def idle(seconds: float) -> None:
        """Suppressed, every offer given back, until nothing has come for ``seconds`` (the job's end and
        its resources' return included): the next job finds an idle cluster, and no offer held."""
        await client.suppress()
        while True:
            try:
                event = await asyncio.wait_for(events.get(), seconds)
            except TimeoutError:
                return
            if isinstance(event, wire.Offers):
                await client.decline([o.offer_id for o in event.offers], refuse_seconds=0)

    try:
        offer = await next_offer()
        if not hold:
            await client.decline([offer.offer_id], refuse_seconds=0)
            await idle(0.1)
        for i in range(times):
            submitted = time.time()
            if not hold:
                await client.revive()
                offer = await next_offer()
            await client.accept([offer.offer_id], [job(f"r{i}", TASK_IMAGE, 0.1)])
            while True:
                event = await events.get()
                if isinstance(event, wire.Update) and event.status.task_id == f"r{i}":
                    if event.status.state == wire.TaskState.RUNNING or event.status.state.terminal:
                        samples.append((event.status.timestamp - submitted) * 1000)
                        break
                elif isinstance(event, wire.Offers) and not hold:
                    # What the launch left of the offer, offered back before the framework suppresses.
                    await client.decline([o.offer_id for o in event.offers], refuse_seconds=0)
            if hold:
                offer = await next_offer()  # what it holds for the next job
            else:
                await idle(0.1)
    finally:
        pumping.cancel()
        await client.teardown()
        await client.close()
    return summary(samples)


# --- Slurm --------------------------------------------------------------------------------------------------


class Slurm:
    """slurmctld and slurmd on this node, with munge: configured, started and stopped here."""

    def __init__(self, root: Path, cpus: int) -> None:
        self.root = root
        self.cpus = cpus
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for binary in ("slurmctld", "slurmd", "sbatch", "srun", "munged"):
            if shutil.which(binary) is None:
                raise Unavailable(
                    f"{binary} is not installed (bash scripts/infra.sh peers installs slurm-wlm, munge)"
                )
        for sub in ("state", "spool", "log", "out"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if subprocess.run(["munge", "-n"], capture_output=True, check=False).returncode != 0:
            Path("/run/munge").mkdir(exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge")
            subprocess.run(["munged", "--force"], capture_output=True, check=False)
            time.sleep(1)
        host = socket.gethostname()
        self.conf.write_text(
            f"""ClusterName=meseta-peers
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
StateSaveLocation={self.root}/state
SlurmdSpoolDir={self.root}/spool
SlurmctldPidFile={self.root}/slurmctld.pid
SlurmdPidFile={self.root}/slurmd.pid
SlurmctldLogFile={self.root}/log/slurmctld.log
SlurmdLogFile={self.root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MaxJobCount=200000
MaxArraySize=100001
ReturnToService=2
MpiDefault=none
NodeName={host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=2000 State=UNKNOWN
PartitionName=peers Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:64
"""
        )
        for daemon in ("slurmctld", "slurmd"):
            # -D: in the foreground, so this script owns the process and stops it.
            self.procs.append(
                subprocess.Popen(
                    [daemon, "-D", "-f", str(self.conf)],
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=(self.root / "log" / f"{daemon}.out").open("wb"),
                )
            )
        deadline = time.monotonic() + 30
        while "idle" not in self.run("sinfo", "-h", "-o", "%T"):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise Unavailable(f"slurmd did not come up: {self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        return "".join(
            (self.root / "log" / n).read_text()[-800:]
            for n in ("slurmd.log", "slurmctld.log")
            if (self.root / "log" / n).exists()
        )

    def run(self, *args: str) -> str:
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, check=False, timeout=120)
        return done.stdout + done.stderr

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()

    def daemons(self) -> dict[str, list[int]]:
        return {"slurm": [p.pid for p in self.procs], "munge": pids_of("munged")}

    def _times(self, out: Path, jobs: int, timeout: float) -> tuple[list[float], list[float]]:
        """Each job's start and end, as its script wrote them (``date +%s.%N`` before and after)."""
        deadline = time.monotonic() + timeout
        while True:
            done = [p for p in out.iterdir() if len(p.read_text().split()) >= 2]
            if len(done) >= jobs:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(done)} of {jobs} Slurm jobs ended within {timeout} s")
            time.sleep(0.1)
        times = [[float(x) for x in p.read_text().split()[:2]] for p in done]
        return [t[0] for t in times], [t[1] for t in times]

    def array(self, jobs: int) -> Figures:
        out = self._fresh("array")
        script = f"date +%s.%N > {out}/$SLURM_ARRAY_TASK_ID; true; date +%s.%N >> {out}/$SLURM_ARRAY_TASK_ID"
        submitted = time.time()
        self.run("sbatch", "-Q", "--output=/dev/null", f"--array=0-{jobs - 1}", "--wrap", script)
        starts, ends = self._times(out, jobs, 600)
        return latencies(submitted, starts, ends)

    def one_by_one(self, jobs: int) -> Figures:
        out = self._fresh("sbatch")
        submitted = time.time()
        for i in range(jobs):
            script = f"date +%s.%N > {out}/{i}; true; date +%s.%N >> {out}/{i}"
            self.run("sbatch", "-Q", "--output=/dev/null", "--wrap", script)
        starts, ends = self._times(out, jobs, 600)
        return latencies(submitted, starts, ends)

    def in_a_row(self, times: int) -> Figures:
        samples = []
        for _ in range(times):
            submitted = time.time()
            started = float(self.run("srun", "-Q", "date", "+%s.%N").split()[0])
            samples.append((started - submitted) * 1000)
        return summary(samples)

    def _fresh(self, name: str) -> Path:
        out = self.root / "out" / name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        return out


# --- Docker Swarm -------------------------------------------------------------------------------------------


class Swarm:
    """The local engine as a one-node swarm for the run (left as it was found)."""

    def __init__(self) -> None:
        self.client = docker.from_env()
        self.made = False

    def start(self) -> None:
        state = self.client.info().get("Swarm", {}).get("LocalNodeState")
        if state != "active":
            try:
                self.client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
            except docker.errors.APIError as exc:
                raise Unavailable(f"docker swarm init failed: {exc.explanation}") from None
            self.made = True

    def stop(self) -> None:
        for service in self.client.services.list(filters={"label": "meseta.peers"}):
            with contextlib.suppress(docker.errors.APIError):
                service.remove()
        if self.made:
            with contextlib.suppress(docker.errors.APIError):
                self.client.swarm.leave(force=True)
        self.client.close()

    def daemons(self) -> dict[str, list[int]]:
        return {"dockerd": pids_of("dockerd"), "containerd": pids_of("containerd")}

    def job(
        self, completions: int, concurrency: int, timeout: float = 600
    ) -> tuple[float, list[float], list[float]]:
        """One replicated-job service; its submit time and each task's container start and end."""
        api = self.client.api
        mode = docker.types.ServiceMode("replicated-job", concurrency=concurrency, replicas=completions)
        submitted = time.time()
        service = self.client.services.create(
            TASK_IMAGE,
            ["true"],
            mode=mode,
            labels={"meseta.peers": "1"},
            restart_policy=docker.types.RestartPolicy("none"),
        )
        deadline = time.monotonic() + timeout
        try:
            while True:
                tasks = api.tasks(filters={"service": service.id})
                done = [t for t in tasks if t["Status"]["State"] == "complete"]
                if len(done) >= completions:
                    break
                failed = [t for t in tasks if t["Status"]["State"] in ("failed", "rejected")]
                if failed:
                    raise RuntimeError(f"swarm task failed: {failed[0]['Status']}")
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{len(done)} of {completions} swarm tasks complete within {timeout} s"
                    )
                time.sleep(0.2)
            starts, ends = [], []
            for task in done:
                container = api.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"])
                starts.append(parse_time(container["State"]["StartedAt"]))
                ends.append(parse_time(container["State"]["FinishedAt"]))
            return submitted, starts, ends
        finally:
            with contextlib.suppress(docker.errors.APIError):
                service.remove()

    def in_a_row(self, times: int) -> Figures:
        samples = []
        for _ in range(times):
            submitted, starts, _ = self.job(1, 1)
            samples.append((starts[0] - submitted) * 1000)
        return summary(samples)


# --- the run ------------------------------------------------------------------------------------------------


async def measured(
    figures: Figures, name: str, daemons: Callable[[], dict[str, list[int]]], work: Any
) -> None:
    """Run one system's workload into ``figures[name]``, with its daemons' CPU seconds; a failure is
    reported with its reason, not skipped."""
    try:
        pids = daemons()
        before = cpu_by_pid(pids)
        result = await work if asyncio.iscoroutine(work) else await asyncio.to_thread(work)
        used = cpu_used(pids, before)
        result["daemon_cpu_seconds"] = {k: round(v, 2) for k, v in used.items()}
        figures[name] = result
    except Exception as exc:
        figures[name] = {"error": f"{type(exc).__name__}: {exc}"}
    print(f"  {name}: {json.dumps(figures[name])}", flush=True)


def ratios(section: Figures, floor: str) -> None:
    """Each system's p50, p99 and makespan as a ratio to the floor's."""
    base = section.get(floor, {})
    for name, figures in section.items():
        if name == floor or "error" in figures:
            continue
        figures["vs_floor"] = {
            key: round(figures[key] / base[key], 2)
            for key in ("p50_ms", "p99_ms", "makespan_s")
            if key in figures and base.get(key)
        }


async def main(args: argparse.Namespace) -> None:
    result: Figures = {
        "jobs": args.jobs,
        "containers": args.containers,
        "in_a_row": args.in_a_row,
        "peers": {},
    }
    w1: Figures = {}
    w2: Figures = {}
    w3: Figures = {}
    none: Callable[[], dict[str, list[int]]] = dict
    print("W1: short jobs, all at once", flush=True)
    await measured(w1, "floor (fork/exec)", none, floor_fork(args.jobs))
    async with meseta("process", 2) as cluster:
        await measured(
            w1,
            "meseta (process)",
            lambda: meseta_daemons(cluster),
            meseta_burst(cluster, args.jobs, "none", 0.01),
        )
        print("W3: one at a time, idle cluster", flush=True)
        await measured(
            w3,
            "meseta (holding an offer)",
            lambda: meseta_daemons(cluster),
            meseta_in_a_row(cluster, args.in_a_row, True),
        )
        await measured(
            w3,
            "meseta (no offer held)",
            lambda: meseta_daemons(cluster),
            meseta_in_a_row(cluster, args.in_a_row, False),
        )
    slurm = Slurm(Path(tempfile.mkdtemp(prefix="meseta-peers-slurm-")), os.cpu_count() or 2)
    try:
        await asyncio.to_thread(slurm.start)
        result["peers"]["slurm"] = "ran"
        await measured(w1, "slurm (sbatch --array)", slurm.daemons, lambda: slurm.array(args.jobs))
        await measured(w1, "slurm (one sbatch per job)", slurm.daemons, lambda: slurm.one_by_one(args.jobs))
        await measured(w3, "slurm (srun)", slurm.daemons, lambda: slurm.in_a_row(args.in_a_row))
    except Unavailable as exc:
        result["peers"]["slurm"] = f"not run: {exc}"
    finally:
        slurm.stop()
    print("W2: short containers, all at once", flush=True)
    await measured(w2, "floor (docker API)", none, floor_docker(args.containers, args.concurrency, "floor"))
    async with meseta("docker", args.concurrency * 0.1) as cluster:
        await measured(
            w2,
            "meseta (docker)",
            lambda: meseta_daemons(cluster),
            meseta_burst(cluster, args.containers, TASK_IMAGE, 0.1),
        )
    swarm = Swarm()
    try:
        await asyncio.to_thread(swarm.start)
        result["peers"]["swarm"] = "ran"

        def swarm_burst() -> Figures:
            submitted, starts, ends = swarm.job(args.containers, args.concurrency)
            return latencies(submitted, starts, ends)

        await measured(w2, "swarm (replicated-job)", swarm.daemons, swarm_burst)
        await measured(
            w3, "swarm (replicated-job of 1)", swarm.daemons, lambda: swarm.in_a_row(args.in_a_row)
        )
    except Unavailable as exc:
        result["peers"]["swarm"] = f"not run: {exc}"
    finally:
        swarm.stop()
    ratios(w1, "floor (fork/exec)")
    ratios(w2, "floor (docker API)")
    result.update({"W1": w1, "W2": w2, "W3": w3})
    path = write_result(args.out, result)
    plot(result, RESULTS / Path(args.out).with_suffix(".png").name)
    print(f"-> {path}")


def plot(result: Figures, path: Path) -> None:
    """p50 and p99 submit -> start of every system, one panel per workload (log scale)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, key in zip(axes, ("W1", "W2", "W3"), strict=True):
        names = [n for n, f in result[key].items() if "p50_ms" in f]
        ys = range(len(names))
        ax.barh([y - 0.2 for y in ys], [result[key][n]["p50_ms"] for n in names], height=0.4, label="p50")
        ax.barh([y + 0.2 for y in ys], [result[key][n]["p99_ms"] for n in names], height=0.4, label="p99")
        ax.set_yticks(list(ys), names, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(left=1)  # bars from 1 ms: their lengths compare
        ax.set_xlabel("submit -> start (ms)")
        ax.set_title(key)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--in-a-row", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", default="peers.json")
    asyncio.run(main(parser.parse_args()))
