"""An agent emulator: thousands of real agents in one process, running no-op tasks.

Each emulated agent is a real :class:`meseta.agent.AgentService` (same wire contract, registration,
heartbeats, launch handling, status updates with checkpoints and retries, kills) with two differences:
its container runtime is :class:`meseta.agent.noop.NoopContainerizer` (a task reports RUNNING, then
FINISHED after its duration), and agents share AMQP connections (one per ``--per-connection`` agents)
instead of holding one each. Run it as a process:

    .venv/bin/python bench/emulator.py --amqp-url URL --agents 1000 --task-seconds 5 --launches out.json

With ``--launches``, it records when each offer cycle's launch reached its agent (when its handling began,
by trace id) and writes them there when it stops (SIGTERM or SIGINT). The agents trace as real ones do:
no span is made unless ``MESETA_TRACE_EXPORTER`` exports them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import tempfile
import time
from pathlib import Path

from aio_pika.abc import AbstractIncomingMessage
from opentelemetry import trace

from meseta.agent import AgentService, AgentSettings
from meseta.agent.handlers import AgentDispatcher
from meseta.agent.noop import NoopContainerizer
from meseta.runtime.gcwatch import GcWatch, freeze_survivors
from meseta.sdk import eventloop, tracing, wire
from meseta.sdk.bus import Bus

log = logging.getLogger("emulator")


class RecordingDispatcher(AgentDispatcher):
    """An agent's dispatcher that also records when each offer cycle's first LAUNCH reached an agent:
    trace id (the framework's decision's: the master passes it on) -> ns since the epoch, taken as the
    handling begins (where the ``agent LAUNCH`` span would start). No span is made for it: the emulated
    agents trace as real ones do (spans made and dropped for every message were 14 % of an emulator's
    time in a profile of a launch burst)."""

    def __init__(self, agent: AgentService, launches: dict[str, int]) -> None:
        super().__init__(agent)
        self.launches = launches

    async def handle(self, message: wire.Message, incoming: AbstractIncomingMessage) -> None:
        if isinstance(message, wire.LaunchTasks):
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                self.launches.setdefault(f"{context.trace_id:032x}", time.time_ns())
        await super().handle(message, incoming)


class AgentEmulator:
    """``count`` agents named ``{prefix}-{i}``, each with ``resources``, on ``hosts`` racks of attributes."""

    def __init__(
        self,
        amqp_url: str,
        count: int,
        resources: wire.Resources,
        *,
        prefix: str = "emu",
        heartbeat_interval: float = 5.0,
        task_seconds: float = 1.0,
        per_connection: int = 100,
        work_dir: Path | None = None,
        launches: dict[str, int] | None = None,
    ) -> None:
        self.amqp_url = amqp_url
        self.count = count
        self.resources = resources
        self.prefix = prefix
        self.heartbeat_interval = heartbeat_interval
        self.task_seconds = task_seconds
        self.per_connection = per_connection
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="meseta-emu-", dir="/dev/shm"))
        self.buses: list[Bus] = []
        self.agents: list[AgentService] = []
        self.launches = launches
        """Where launch arrivals are recorded (:class:`RecordingDispatcher`); None: not recorded."""

    async def start(self, concurrency: int = 100) -> float:
        """Start every agent (``concurrency`` at a time); the seconds it took."""
        began = time.monotonic()
        for _ in range((self.count + self.per_connection - 1) // self.per_connection):
            bus = Bus(self.amqp_url, "agent")  # the service name: its spans are named like a real agent's
            await bus.connect()
            self.buses.append(bus)
        for i in range(self.count):
            settings = AgentSettings(
                amqp_url=self.amqp_url,
                dev=True,
                fsync_checkpoints=False,
                resources=self.resources,
                agent_id=f"{self.prefix}-{i}",
                hostname=f"{self.prefix}-host-{i}",
                attributes={"rack": f"r{i % 20}", "zone": ("east", "west")[i % 2]},
                heartbeat_interval=self.heartbeat_interval,
                gpu_ids=(),
                work_dir=self.work_dir,
                container_retention=0,
                gc_interval=60.0,
            )
            bus = self.buses[i % len(self.buses)]
            agent = AgentService(settings, NoopContainerizer(self.task_seconds), bus)
            if self.launches is not None:
                agent.dispatcher = RecordingDispatcher(agent, self.launches)
            self.agents.append(agent)
        gate = asyncio.Semaphore(concurrency)

        async def start_one(agent: AgentService) -> None:
            async with gate:
                await agent.start()

        await asyncio.gather(*(start_one(a) for a in self.agents))
        return time.monotonic() - began

    async def stop(self) -> None:
        # Connections first: closing them ends every consumer at once, where each agent cancelling its
        # own (a broker round trip each, in series per channel) took minutes at 10,000 agents.
        await asyncio.gather(*(bus.close() for bus in self.buses), return_exceptions=True)
        await asyncio.gather(*(a.stop() for a in self.agents), return_exceptions=True)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--cpus", type=float, default=4)
    parser.add_argument("--mem", type=float, default=8192)
    parser.add_argument("--prefix", default="emu")
    parser.add_argument("--heartbeat-interval", type=float, default=5.0)
    parser.add_argument("--task-seconds", type=float, default=1.0)
    parser.add_argument("--per-connection", type=int, default=100)
    parser.add_argument("--launches", type=Path, help="Write trace id -> launch arrival (ns) here at exit.")
    parser.add_argument("--ready-file", type=Path, help="Touched once every agent has started.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s emulator %(levelname)s %(message)s")
    async with GcWatch(amortize=True).running() as watch:  # as the services run (meseta.cli)
        await emulate(args)
    log.warning("%s", watch.summary())


async def emulate(args: argparse.Namespace) -> None:
    """Start the agents, say so, run until SIGTERM, write the launch record, stop them."""
    # As a real agent traces: no span made unless they are exported (then to the collector, for
    # `meseta trace report`'s stage breakdown).
    tracing.configure(
        "agent", os.environ.get("MESETA_TRACE_EXPORTER", "none"), os.environ.get("MESETA_OTLP_ENDPOINT")
    )
    launches: dict[str, int] | None = {} if args.launches else None
    emulator = AgentEmulator(
        args.amqp_url,
        args.agents,
        wire.Resources(cpus=args.cpus, mem=args.mem, disk=10_000),
        prefix=args.prefix,
        heartbeat_interval=args.heartbeat_interval,
        task_seconds=args.task_seconds,
        per_connection=args.per_connection,
        launches=launches,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    seconds = await emulator.start()
    log.warning("%d agents up in %.1f s", args.agents, seconds)
    # Thousands of agents' objects live as long as the process: out of the collector's way, or each full
    # collection walks them all while every agent's messages wait.
    freeze_survivors()
    if args.ready_file:
        args.ready_file.write_text(json.dumps({"agents": args.agents, "start_seconds": seconds}))
    await stop.wait()
    if args.launches:
        args.launches.write_text(json.dumps(launches))
    await emulator.stop()


if __name__ == "__main__":
    eventloop.run(main())
