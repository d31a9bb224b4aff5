"""``meseta``: run a master, an allocator, an agent, or the demo. Every flag also reads ``MESETA_*``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from meseta.agent.settings import DEFAULT_WORK_DIR, AgentSettings
from meseta.allocator.settings import AllocatorSettings
from meseta.master.settings import DEFAULT_API_PORT, MasterSettings
from meseta.runtime import defaults
from meseta.runtime.etcd import EtcdStore
from meseta.runtime.gcwatch import GcWatch
from meseta.runtime.service import Service
from meseta.sdk import KillRefused, LogsUnavailable, eventloop, tracing
from meseta.sdk.bus import Bus
from meseta.sdk.wire import PortRange, Resources

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

DEFAULT_AMQP_URL = defaults.AMQP_URL


def default(settings: type[Any], name: str) -> Any:
    """A settings class's default for ``name``: every flag shows the one the service itself uses."""
    found = {f.name: f for f in dataclasses.fields(settings)}[name]
    if found.default is dataclasses.MISSING:
        raise ValueError(f"{settings.__name__}.{name} has no default")
    return found.default


AmqpUrl = Annotated[str, typer.Option(envvar="MESETA_AMQP_URL", help="AMQP URL, vhost included.")]
EtcdEndpoint = Annotated[str, typer.Option(envvar="MESETA_ETCD_ENDPOINT", help="etcd host:port.")]
EtcdPrefix = Annotated[
    str, typer.Option(envvar="MESETA_ETCD_PREFIX", help="Key prefix of this cluster in etcd.")
]
LogLevel = Annotated[str, typer.Option(envvar="MESETA_LOG_LEVEL")]
TraceExporter = Annotated[
    str, typer.Option(envvar="MESETA_TRACE_EXPORTER", help="Trace exporter: none, console or otlp.")
]
OtlpEndpoint = Annotated[
    str | None,
    typer.Option(envvar="MESETA_OTLP_ENDPOINT", help="Collector's OTLP/HTTP base URL (traces and metrics)."),
]
Api = Annotated[
    str,
    typer.Option(envvar="MESETA_API", help="Masters' state API URLs, comma-separated: the leader answers."),
]
DEFAULT_API = defaults.API


def _setup(service: str, log_level: str, exporter: str, endpoint: str | None) -> None:
    logging.basicConfig(
        level=log_level.upper(), format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    tracing.configure(service, exporter, endpoint)


def _serve(service: Service) -> None:
    """Run a service until SIGINT/SIGTERM."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(service.stop()))
        async with GcWatch(amortize=True).running():
            await service.run()

    eventloop.run(main())


def parse_ports(text: str) -> tuple[PortRange, ...]:
    """``31000-31099,32000`` into port ranges."""
    ranges = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        begin, _, end = part.partition("-")
        ranges.append(PortRange(begin=int(begin), end=int(end or begin)))
    return tuple(ranges)


def parse_attributes(pairs: list[str]) -> dict[str, str]:
    """``["rack=r1", "zone=a"]`` into a dict."""
    attributes = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"attribute {pair!r} is not KEY=VALUE")
        attributes[key] = value
    return attributes


@app.command()
def master(
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
    etcd_endpoint: EtcdEndpoint = defaults.ETCD_ENDPOINT,
    etcd_prefix: EtcdPrefix = defaults.ETCD_PREFIX,
    offer_timeout: Annotated[float, typer.Option(envvar="MESETA_OFFER_TIMEOUT")] = default(
        MasterSettings, "offer_timeout"
    ),
    revocation_grace: Annotated[
        float,
        typer.Option(
            envvar="MESETA_REVOCATION_GRACE", help="Seconds between a revocation notice and the kill."
        ),
    ] = default(MasterSettings, "revocation_grace"),
    name: Annotated[str | None, typer.Option(envvar="MESETA_MASTER_NAME", help="Candidate name.")] = None,
    lease_ttl: Annotated[
        int, typer.Option(envvar="MESETA_LEASE_TTL", help="Leader lease, seconds.")
    ] = defaults.LEASE_TTL,
    agent_timeout: Annotated[
        float,
        typer.Option(
            envvar="MESETA_AGENT_TIMEOUT", help="Seconds without heartbeats before an agent is lost."
        ),
    ] = default(MasterSettings, "agent_timeout"),
    heartbeat_rate: Annotated[
        float,
        typer.Option(
            envvar="MESETA_HEARTBEAT_RATE",
            help="Agent heartbeats per second to hold at most (agents are told to beat slower); 0: off.",
        ),
    ] = default(MasterSettings, "heartbeat_rate"),
    framework_timeout: Annotated[
        float,
        typer.Option(
            envvar="MESETA_FRAMEWORK_TIMEOUT",
            help="Seconds without a framework's heartbeat before it counts as disconnected.",
        ),
    ] = default(MasterSettings, "framework_timeout"),
    api_host: Annotated[str, typer.Option(envvar="MESETA_API_HOST", help="State API address.")] = default(
        MasterSettings, "api_host"
    ),
    api_port: Annotated[
        int, typer.Option(envvar="MESETA_API_PORT", help="State API port; 0: any free one; -1: none.")
    ] = DEFAULT_API_PORT,
    log_level: LogLevel = "INFO",
    trace_exporter: TraceExporter = "none",
    otlp_endpoint: OtlpEndpoint = None,
) -> None:
    """Run a master."""
    from meseta.master.service import MasterService

    _setup("master", log_level, trace_exporter, otlp_endpoint)
    settings = MasterSettings(
        amqp_url,
        etcd_endpoint,
        etcd_prefix,
        offer_timeout=offer_timeout,
        revocation_grace=revocation_grace,
        lease_ttl=lease_ttl,
        agent_timeout=agent_timeout,
        heartbeat_rate=heartbeat_rate,
        framework_timeout=framework_timeout,
        api_host=api_host,
        api_port=None if api_port < 0 else api_port,
    )
    settings = dataclasses.replace(settings, name=name) if name else settings
    _serve(MasterService(settings))


@app.command()
def allocator(
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
    policy: Annotated[
        str, typer.Option(envvar="MESETA_ALLOCATOR_POLICY", help="Until etcd names one.")
    ] = default(AllocatorSettings, "policy"),
    etcd_endpoint: EtcdEndpoint = defaults.ETCD_ENDPOINT,
    etcd_prefix: EtcdPrefix = defaults.ETCD_PREFIX,
    min_offer_cpus: Annotated[float, typer.Option(envvar="MESETA_MIN_OFFER_CPUS")] = 0.0,
    min_offer_mem: Annotated[float, typer.Option(envvar="MESETA_MIN_OFFER_MEM")] = 0.0,
    name: Annotated[str | None, typer.Option(envvar="MESETA_ALLOCATOR_NAME", help="Candidate name.")] = None,
    lease_ttl: Annotated[
        int, typer.Option(envvar="MESETA_LEASE_TTL", help="Leader lease, seconds.")
    ] = defaults.LEASE_TTL,
    log_level: LogLevel = "INFO",
    trace_exporter: TraceExporter = "none",
    otlp_endpoint: OtlpEndpoint = None,
) -> None:
    """Run an allocator."""
    from meseta.allocator.service import AllocatorService

    _setup("allocator", log_level, trace_exporter, otlp_endpoint)
    minimum = Resources(cpus=min_offer_cpus, mem=min_offer_mem)
    settings = AllocatorSettings(
        amqp_url,
        policy=policy,
        etcd_endpoint=etcd_endpoint,
        etcd_prefix=etcd_prefix,
        min_offer=None if minimum.is_empty() else minimum,
        lease_ttl=lease_ttl,
    )
    settings = dataclasses.replace(settings, name=name) if name else settings
    _serve(AllocatorService(settings))


@app.command()
def agent(
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
    agent_id: Annotated[str | None, typer.Option(envvar="MESETA_AGENT_ID")] = None,
    hostname: Annotated[str | None, typer.Option(envvar="MESETA_AGENT_HOSTNAME")] = None,
    cpus: Annotated[float, typer.Option(envvar="MESETA_AGENT_CPUS")] = 2.0,
    mem: Annotated[float, typer.Option(envvar="MESETA_AGENT_MEM", help="MiB")] = 2048.0,
    disk: Annotated[float, typer.Option(envvar="MESETA_AGENT_DISK", help="MiB")] = 10240.0,
    gpus: Annotated[int, typer.Option(envvar="MESETA_AGENT_GPUS")] = 0,
    ports: Annotated[str, typer.Option(envvar="MESETA_AGENT_PORTS")] = "31000-32000",
    attribute: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable.")] = None,
    heartbeat_interval: Annotated[float, typer.Option(envvar="MESETA_HEARTBEAT_INTERVAL")] = default(
        AgentSettings, "heartbeat_interval"
    ),
    cluster: Annotated[
        str, typer.Option(envvar="MESETA_CLUSTER", help="Label on this cluster's containers.")
    ] = default(AgentSettings, "cluster"),
    isolator: Annotated[str, typer.Option(envvar="MESETA_ISOLATOR", help="docker or process.")] = default(
        AgentSettings, "isolator"
    ),
    gpu_ids: Annotated[
        str | None, typer.Option(envvar="MESETA_GPU_IDS", help="GPU ids to offer, e.g. 0,1; default: NVML.")
    ] = None,
    container_retention: Annotated[
        float, typer.Option(envvar="MESETA_CONTAINER_RETENTION", help="Seconds exited tasks are kept.")
    ] = default(AgentSettings, "container_retention"),
    kill_grace: Annotated[
        float,
        typer.Option(
            envvar="MESETA_KILL_GRACE", help="SIGTERM-to-SIGKILL seconds for tasks without their own."
        ),
    ] = default(AgentSettings, "kill_grace_seconds"),
    work_dir: Annotated[
        Path,
        typer.Option(
            envvar="MESETA_WORK_DIR",
            help="Checkpoints (tasks, unacknowledged updates), under WORK_DIR/AGENT_ID: agents with "
            "different ids may share one.",
        ),
    ] = DEFAULT_WORK_DIR,
    log_level: LogLevel = "INFO",
    trace_exporter: TraceExporter = "none",
    otlp_endpoint: OtlpEndpoint = None,
) -> None:
    """Run an agent."""
    from meseta.agent.service import AgentService
    from meseta.agent.settings import default_agent_id

    _setup("agent", log_level, trace_exporter, otlp_endpoint)
    resources = Resources(cpus=cpus, mem=mem, disk=disk, gpus=gpus, ports=parse_ports(ports))
    settings = AgentSettings(
        amqp_url=amqp_url,
        resources=resources,
        attributes=parse_attributes(attribute or []),
        heartbeat_interval=heartbeat_interval,
        cluster=cluster,
        isolator=isolator,
        gpu_ids=None if gpu_ids is None else tuple(filter(None, gpu_ids.split(","))),
        container_retention=container_retention,
        kill_grace_seconds=kill_grace,
        work_dir=work_dir,
        agent_id=agent_id or default_agent_id(),
        hostname=hostname or socket.gethostname(),
    )
    _serve(AgentService(settings))


@app.command()
def logs(
    task_id: Annotated[str, typer.Argument(help="The task.")],
    framework_id: Annotated[
        str | None, typer.Option(help="Needed when several frameworks use the id.")
    ] = None,
    tail_bytes: Annotated[int, typer.Option(help="Bytes from the end of each stream.")] = 65536,
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
) -> None:
    """Print a task's stdout (then its stderr, on stderr)."""
    from meseta.sdk import fetch_logs

    found = _ask(amqp_url, lambda bus: fetch_logs(bus, task_id, framework_id, tail_bytes))
    typer.echo(found.stdout, nl=False)
    typer.echo(found.stderr, nl=False, err=True)


T = TypeVar("T")


def _ask(amqp_url: str, call: Callable[[Bus], Awaitable[T]]) -> T:
    """Run one call to the master over a short-lived bus; a refusal is printed and exits with 1."""

    async def main() -> T:
        bus = Bus(amqp_url, "cli")
        await bus.connect()
        try:
            return await call(bus)
        finally:
            await bus.close()

    try:
        return eventloop.run(main())
    except (LogsUnavailable, KillRefused) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def _with_store(etcd_endpoint: str, etcd_prefix: str, action: Callable[[EtcdStore], Awaitable[None]]) -> None:
    async def main() -> None:
        store = EtcdStore(etcd_endpoint, etcd_prefix)
        await store.connect()
        try:
            await action(store)
        finally:
            await store.close()

    eventloop.run(main())


@app.command()
def policy(
    name: Annotated[str, typer.Argument(help="drf, wfs, priority or lottery.")],
    etcd_endpoint: EtcdEndpoint = defaults.ETCD_ENDPOINT,
    etcd_prefix: EtcdPrefix = defaults.ETCD_PREFIX,
) -> None:
    """Switch the running allocator's policy (takes effect within one tick, no restart)."""
    from meseta.allocator.config import write_policy
    from meseta.allocator.policy import POLICIES

    if name not in POLICIES:
        raise typer.BadParameter(f"unknown policy {name!r}; known: {', '.join(sorted(POLICIES))}")
    _with_store(etcd_endpoint, etcd_prefix, lambda store: write_policy(store, name))
    typer.echo(f"policy set to {name}")


@app.command()
def role(
    name: Annotated[str, typer.Argument(help="The role.")],
    weight: Annotated[float, typer.Option(help="Weight among roles.")] = 1.0,
    quota_cpus: Annotated[float, typer.Option(help="Guaranteed cpus.")] = 0.0,
    quota_mem: Annotated[float, typer.Option(help="Guaranteed memory, MiB.")] = 0.0,
    quota_gpus: Annotated[int, typer.Option(help="Guaranteed GPUs.")] = 0,
    etcd_endpoint: EtcdEndpoint = defaults.ETCD_ENDPOINT,
    etcd_prefix: EtcdPrefix = defaults.ETCD_PREFIX,
) -> None:
    """Set a role's weight and quota (guaranteed allocation, enforced by revocation)."""
    from meseta.allocator.config import write_role

    quota = Resources(cpus=quota_cpus, mem=quota_mem, gpus=quota_gpus)
    _with_store(etcd_endpoint, etcd_prefix, lambda store: write_role(store, name, weight, quota))
    typer.echo(
        f"role {name}: weight {weight:g}, quota cpus={quota_cpus:g} mem={quota_mem:g} gpus={quota_gpus}"
    )


@app.command()
def example(
    name: Annotated[str, typer.Argument(help="batch, gang or service.")],
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
    hosts: Annotated[
        str, typer.Option(help="batch: hosts holding the input blocks.")
    ] = "host-a,host-b,host-c",
    size: Annotated[int, typer.Option(help="gang: ranks; service: instances.")] = 3,
    delay: Annotated[float, typer.Option(help="batch: delay scheduling wait, seconds.")] = 3.0,
    hold: Annotated[float, typer.Option(help="service: seconds to stay up before scaling to 0.")] = 5.0,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 300.0,
    trace_exporter: TraceExporter = "none",
    otlp_endpoint: OtlpEndpoint = None,
) -> None:
    """Run an example framework against a running cluster until it is done."""
    from meseta.examples.runner import run_example

    logging.basicConfig(level=logging.WARNING)
    tracing.configure("framework", trace_exporter, otlp_endpoint)
    summary = eventloop.run(run_example(name, amqp_url, hosts.split(","), size, delay, timeout, hold))
    typer.echo(summary)


@app.command()
def demo(
    batch_tasks: Annotated[int, typer.Option(help="Short tasks of the batch framework.")] = 30,
    service_tasks: Annotated[int, typer.Option(help="Long tasks the service framework holds.")] = 2,
    image: Annotated[str, typer.Option(envvar="MESETA_TASK_IMAGE")] = defaults.TASK_IMAGE,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 300.0,
) -> None:
    """Bring up a local cluster, run two frameworks on it with a live view, print a summary."""
    from meseta.demo.runner import run_demo

    logging.basicConfig(level=logging.WARNING)
    raise typer.Exit(eventloop.run(run_demo(batch_tasks, service_tasks, image, timeout)))


@app.command()
def up(
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
    etcd_endpoint: EtcdEndpoint = defaults.ETCD_ENDPOINT,
    etcd_prefix: EtcdPrefix = defaults.ETCD_PREFIX,
    agents: Annotated[int, typer.Option(min=1, help="Agents to start.")] = 2,
    cpus: Annotated[float, typer.Option(help="Cpus each agent offers (may exceed the host's).")] = 2.0,
    mem: Annotated[float, typer.Option(help="MiB each agent offers.")] = 1024.0,
    api_port: Annotated[
        int, typer.Option(envvar="MESETA_API_PORT", help="The master's state API.")
    ] = DEFAULT_API_PORT,
    isolator: Annotated[str, typer.Option(envvar="MESETA_ISOLATOR", help="docker or process.")] = default(
        AgentSettings, "isolator"
    ),
    image: Annotated[
        str, typer.Option(envvar="MESETA_TASK_IMAGE", help="Task image, built offline if missing.")
    ] = defaults.TASK_IMAGE,
    directory: Annotated[
        Path, typer.Option(envvar="MESETA_UP_DIR", help="Logs and the agents' work directories.")
    ] = Path("/var/tmp/meseta-up"),
    cluster: Annotated[
        str,
        typer.Option(envvar="MESETA_CLUSTER", help="Label on its containers, and its agents' id prefix."),
    ] = "meseta-up",
) -> None:
    """Run a local cluster to develop against (master, allocator, agents) until Ctrl-C."""
    from meseta.demo.devcluster import NotReady, UpSettings
    from meseta.demo.devcluster import up as run_up

    logging.basicConfig(level=logging.WARNING)
    settings = UpSettings(
        amqp_url=amqp_url,
        etcd_endpoint=etcd_endpoint,
        etcd_prefix=etcd_prefix,
        agents=agents,
        cpus=cpus,
        mem=mem,
        api_port=api_port,
        isolator=isolator,
        image=image,
        directory=directory,
        cluster=cluster,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_up(settings, stop, lambda text: typer.echo(text))

    try:
        eventloop.run(main())
    except NotReady as exc:
        typer.echo(f"meseta up: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("task-image")
def task_image(
    image: Annotated[str, typer.Option(envvar="MESETA_TASK_IMAGE")] = defaults.TASK_IMAGE,
    rebuild: Annotated[bool, typer.Option(help="Build it even if Docker has it.")] = False,
) -> None:
    """Build the offline task image (busybox-static, no registry) that the examples and docs name."""
    from meseta.ops.task_image import TaskImageError, ensure_task_image

    try:
        built = ensure_task_image(image, rebuild=rebuild)
    except TaskImageError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{image} {'built' if built else 'is already there'}")


# --- operators ------------------------------------------------------------------------------------------


def _show(table_name: str, api: str, as_json: bool) -> None:
    from rich.console import Console

    from meseta.ops.state_client import NoLeader, fetch_state, split_apis
    from meseta.ops.tables import TABLES

    try:
        state = fetch_state(split_apis(api))
    except NoLeader as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if as_json:
        if table_name == "status":
            typer.echo(state.model_dump_json(indent=2))
        else:
            typer.echo("[" + ",".join(x.model_dump_json() for x in getattr(state, table_name)) + "]")
        return
    Console(width=200).print(TABLES[table_name](state))


JsonFlag = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]


@app.command()
def status(api: Api = DEFAULT_API, as_json: JsonFlag = False) -> None:
    """The cluster at a glance: leader, epoch, totals, recent offer round trips."""
    _show("status", api, as_json)


@app.command()
def agents(api: Api = DEFAULT_API, as_json: JsonFlag = False) -> None:
    """Agents with total, used and offered resources."""
    _show("agents", api, as_json)


@app.command()
def frameworks(api: Api = DEFAULT_API, as_json: JsonFlag = False) -> None:
    """Frameworks with role, weight, dominant and fair share, declined-offer ratio."""
    _show("frameworks", api, as_json)


@app.command()
def tasks(api: Api = DEFAULT_API, as_json: JsonFlag = False) -> None:
    """Live tasks with their state and agent."""
    _show("tasks", api, as_json)


@app.command()
def offers(api: Api = DEFAULT_API, as_json: JsonFlag = False) -> None:
    """Outstanding offers."""
    _show("offers", api, as_json)


@app.command()
def kill(
    task_id: Annotated[str, typer.Argument(help="The task.")],
    framework_id: Annotated[
        str | None, typer.Option(help="Needed when several frameworks use the id.")
    ] = None,
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
) -> None:
    """Kill a task as the operator: its framework hears KILLED with reason KILLED_BY_OPERATOR."""
    from meseta.sdk import operator_kill

    killing = _ask(amqp_url, lambda bus: operator_kill(bus, task_id, framework_id))
    typer.echo(f"killing {killing.task_id} of {killing.framework_id} on {killing.agent_id}")


@app.command()
def collector(
    out_dir: Annotated[Path, typer.Option(envvar="MESETA_COLLECTOR_DIR", help="Where the .jsonl go.")] = Path(
        "/var/tmp/meseta-otel"
    ),
    host: Annotated[str, typer.Option(envvar="MESETA_COLLECTOR_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="MESETA_COLLECTOR_PORT")] = 4318,
    log_level: LogLevel = "INFO",
) -> None:
    """Receive OTLP/HTTP spans and metrics; append them to traces.jsonl and metrics.jsonl."""
    from meseta.ops.collector import Collector

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s collector %(levelname)s %(message)s")

    async def main() -> None:
        found = Collector(out_dir)
        await found.start(host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await found.stop()

    eventloop.run(main())


trace_app = typer.Typer(no_args_is_help=True, help="Offer-cycle traces.")
app.add_typer(trace_app, name="trace")


@trace_app.command("report")
def trace_report(
    spans: Annotated[Path, typer.Argument(help="OTLP/JSON lines: the collector's traces.jsonl.")],
    plot: Annotated[Path | None, typer.Option(help="Write a latency plot (PNG) here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON here.")] = None,
) -> None:
    """p50/p95/p99 of each offer-cycle stage and of the whole cycle, per framework."""
    import json

    from rich.console import Console

    from meseta.ops import trace_report as tr

    found, incomplete = tr.cycles(tr.read_spans(spans))
    if not found:
        typer.echo(f"no complete offer cycle in {spans} ({incomplete} incomplete)", err=True)
        raise typer.Exit(1)
    rep = tr.report(found, incomplete)
    Console(width=200).print(tr.table(rep))
    if json_out is not None:
        json_out.write_text(json.dumps(rep.as_dict(), indent=2))
    if plot is not None:
        tr.plot(found, rep, plot)
        typer.echo(f"plot written to {plot}")


if __name__ == "__main__":
    app()
