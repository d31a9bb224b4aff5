"""What every benchmark shares: a control plane of real processes (master, allocator), an agent emulator
process, frameworks in this process that record their offer cycles, and process / broker sampling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from meseta.sdk import FrameworkClient, stats, tracing, wire
from meseta.testing.processes import ProcessCluster

BENCH = Path(__file__).resolve().parent
RESULTS = Path(os.environ.get("MESETA_BENCH_RESULTS", BENCH / "results"))
"""Where results go (the CI smoke runs write elsewhere, leaving the committed figures alone)."""
CLK_TCK = os.sysconf("SC_CLK_TCK")


percentile = stats.percentile
"""Nearest rank, as everywhere in Meseta (``meseta.sdk.stats``); NaN for no values."""


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50), 3),
        "p95_ms": round(percentile(values, 95), 3),
        "p99_ms": round(percentile(values, 99), 3),
        "mean_ms": round(statistics.fmean(values), 3) if values else float("nan"),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


class DecideRecorder(SpanProcessor):
    """Trace id -> (framework decide start ns, offer id) for every offer this process's frameworks saw."""

    def __init__(self) -> None:
        self.decides: dict[str, tuple[int, str]] = {}
        self.decided: dict[str, int] = {}
        """Offer id -> the decide span's end (ns): the framework's answer left."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if span.name == "framework decide" and span.start_time is not None:
            offer_id = str((span.attributes or {}).get("meseta.offer_id", ""))
            self.decides[f"{span.context.trace_id:032x}"] = (span.start_time, offer_id)

    def on_end(self, span: ReadableSpan) -> None:
        if span.name == "framework decide" and span.end_time is not None:
            self.decided[str((span.attributes or {}).get("meseta.offer_id", ""))] = span.end_time


RECORDER = DecideRecorder()


_INSTALLED: list[SpanProcessor] = []


def install_tracing(service: str = "framework", recorder: SpanProcessor = RECORDER) -> None:
    """Spans go to ``recorder``; with MESETA_TRACE_EXPORTER=otlp they also go to the collector at
    MESETA_OTLP_ENDPOINT (as every service's then do), for `meseta trace report`'s stage breakdown.
    Once per process: a repeated run must not add the recorder twice."""
    if recorder in _INSTALLED:
        return
    _INSTALLED.append(recorder)
    tracing.configure(
        service,
        os.environ.get("MESETA_TRACE_EXPORTER", "none"),
        os.environ.get("MESETA_OTLP_ENDPOINT"),
        make_spans=True,
    )
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    provider.add_span_processor(recorder)


@dataclass
class ProcSample:
    cpu_seconds: float
    rss_mb: float


def sample(pid: int) -> ProcSample:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return ProcSample(cpu, rss)


def pids_of(*names: str) -> list[int]:
    """Processes whose command name is one of ``names``."""
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _command(p) in names]


def broker_pids() -> list[int]:
    """RabbitMQ's Erlang VM (beam.smp), for its CPU time."""
    return pids_of("beam.smp")


def _command(proc: Path) -> str:
    try:
        return (proc / "comm").read_text().strip()
    except OSError:
        return ""


def cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each named group of processes."""
    return {name: sum(sample(pid).cpu_seconds for pid in group) for name, group in pids.items()}


def cpu_used(pids: dict[str, list[int]], before: dict[int, float]) -> dict[str, float]:
    """CPU seconds each named group used since ``before`` (:func:`cpu_by_pid`), over the processes that
    lived through it: a daemon's helper (a containerd shim) may exit meanwhile, and its /proc entry with
    it (that made a peers run fail)."""
    now = cpu_by_pid(pids)
    return {
        name: sum(now[pid] - before[pid] for pid in group if pid in now and pid in before)
        for name, group in pids.items()
    }


def cpu_by_pid(pids: dict[str, list[int]]) -> dict[int, float]:
    """CPU seconds used so far by each of the processes still alive."""
    found: dict[int, float] = {}
    for pid in {pid for group in pids.values() for pid in group}:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            found[pid] = sample(pid).cpu_seconds
    return found


_RECEIVED = (
    "maps:get(messages_received_total, maps:get([{protocol, amqp091}], rabbit_global_counters:overview()))."
)


def published() -> int:
    """Messages the broker has received so far, node-wide (its global counters: the benches run alone on
    the broker). Read through ``rabbitmqctl``, not the management API: the broker's metrics collector is
    off (scripts/infra.sh says why). -1 when the counter cannot be read."""
    try:
        out = subprocess.run(
            ["rabbitmqctl", "eval", _RECEIVED], capture_output=True, text=True, timeout=30, check=True
        )
        return int(out.stdout.strip())
    except (OSError, subprocess.SubprocessError, ValueError):
        return -1


@dataclass
class Bench:
    cluster: ProcessCluster
    emulators: list[tuple[asyncio.subprocess.Process, Path]]
    """Each emulator process, and where it writes its launch arrivals."""
    agents: int
    start_seconds: float
    clients: list[FrameworkClient] = field(default_factory=list)

    def pid(self, name: str) -> int:
        return self.cluster.procs[name].pid

    async def stop_emulator(self) -> dict[str, int]:
        """Stop the emulators; their record of launch arrivals by trace id."""
        launches: dict[str, int] = {}
        for proc, path in self.emulators:
            if proc.returncode is None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 120)
            if path.exists():
                launches.update({k: int(v) for k, v in json.loads(path.read_text()).items()})
        return launches


def leader_count(apis: list[str], name: str) -> int:
    """One of the leading master's counts (``agents``, ``offers``, ...) from its cheap ``/api/v1/leader``
    (not the whole state); -1 when no master answers as leader."""
    for base in apis:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(base + "/api/v1/leader", timeout=30) as response:
                leader = json.loads(response.read())
                if leader["leading"]:
                    return int(leader[name])
    return -1


async def wait_agents(apis: list[str], count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        seen = await asyncio.to_thread(leader_count, apis, "agents")
        if seen >= count:
            return
        await asyncio.sleep(1)
    raise TimeoutError(f"only {seen} of {count} agents registered within {timeout} s")


@asynccontextmanager
async def control_plane(
    agents: int,
    *,
    cpus: float = 4,
    mem: float = 8192,
    heartbeat_interval: float = 5.0,
    task_seconds: float = 5.0,
    master_env: dict[str, str] | None = None,
    start_timeout: float = 300,
    processes: int = 1,
    record_launches: bool = False,
) -> AsyncIterator[Bench]:
    """Master and allocator processes, and ``agents`` emulated agents registered with the master. With
    ``record_launches``, the emulators record when each launch arrived (for :meth:`Bench.stop_emulator`).
    Either way they trace as real agents do (no span made unless exported)."""
    log_dir = Path(tempfile.mkdtemp(prefix="meseta-bench-"))
    env = {
        "MESETA_LEASE_TTL": "5",
        "MESETA_AGENT_TIMEOUT": str(max(15.0, heartbeat_interval * 4)),
        "MESETA_LOG_LEVEL": "WARNING",
        # Heartbeats wait in the calls queue behind everything else: a loaded master must not take a
        # framework for gone.
        "MESETA_FRAMEWORK_TIMEOUT": "60",
        **(master_env or {}),
    }
    async with ProcessCluster(log_dir, env=env) as cluster:
        await cluster.allocator(0)
        await cluster.master(0)
        emulators: list[tuple[asyncio.subprocess.Process, Path]] = []
        shares = [agents // processes + (1 if i < agents % processes else 0) for i in range(processes)]
        for i, share in enumerate(shares):
            launches, ready = log_dir / f"launches-{i}.json", log_dir / f"emulator-{i}.ready"
            log = (log_dir / f"emulator-{i}.log").open("ab")
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(BENCH / "emulator.py"),
                f"--amqp-url={cluster.amqp_url}",
                f"--agents={share}",
                f"--prefix=emu{i}",
                f"--cpus={cpus}",
                f"--mem={mem}",
                f"--heartbeat-interval={heartbeat_interval}",
                f"--task-seconds={task_seconds}",
                *([f"--launches={launches}"] if record_launches else []),
                f"--ready-file={ready}",
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=emulator_env(),
            )
            log.close()
            emulators.append((proc, launches))
        began = time.monotonic()
        bench = Bench(cluster, emulators, agents, 0.0)
        try:
            for i, (proc, _) in enumerate(emulators):
                while not (log_dir / f"emulator-{i}.ready").exists():
                    if proc.returncode is not None:
                        text = (log_dir / f"emulator-{i}.log").read_text()[-2000:]
                        raise RuntimeError(f"emulator {i} exited: {text}")
                    if time.monotonic() - began > start_timeout:
                        raise TimeoutError(f"{agents} emulated agents did not start within {start_timeout} s")
                    await asyncio.sleep(0.5)
            await wait_agents(cluster.apis, agents, start_timeout)
            bench.start_seconds = time.monotonic() - began
            yield bench
        finally:
            for client in bench.clients:
                with contextlib.suppress(Exception):
                    await client.close()
            await bench.stop_emulator()


def emulator_env() -> dict[str, str]:
    """The emulators' environment: this process's, with ``MESETA_BENCH_AGENT_QUEUE_TYPE`` as the agents'
    ``MESETA_QUEUE_TYPE`` where it is set (agents' queues may differ from the rest, as in production)."""
    agents = os.environ.get("MESETA_BENCH_AGENT_QUEUE_TYPE")
    return {**os.environ, **({"MESETA_QUEUE_TYPE": agents} if agents else {})}


def noop_task(task_id: str, cpus: float, mem: float, seconds: float) -> wire.TaskInfo:
    return wire.TaskInfo(
        task_id=task_id,
        resources=wire.Resources(cpus=cpus, mem=mem),
        container=wire.ContainerSpec(image="noop", env={"MESETA_NOOP_SECONDS": f"{seconds:g}"}),
    )
