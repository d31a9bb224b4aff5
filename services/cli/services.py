"""``meseta master | allocator | agent | gateway | collector``: run one service until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import socket
from pathlib import Path
from typing import Annotated

import typer

from meseta.agent.settings import DEFAULT_WORK_DIR, AgentSettings
from meseta.allocator.settings import AllocatorSettings
from meseta.cli.common import (
    DEFAULT_AMQP_URL,
    DEFAULT_CREDENTIALS,
    AmqpUrl,
    AmqpUser,
    CredentialsFile,
    Dev,
    EtcdEndpoint,
    EtcdPrefix,
    LogLevel,
    OtlpEndpoint,
    TraceExporter,
    app,
    build,
    default,
    login,
    parse_attributes,
    parse_ports,
    serve,
    setup,
)
from meseta.gateway.settings import DEFAULT_PORT as DEFAULT_GATEWAY_PORT
from meseta.gateway.settings import GatewaySettings
from meseta.master.settings import DEFAULT_API_PORT, MasterSettings
from meseta.runtime import defaults
from meseta.sdk import eventloop
from meseta.sdk.wire import Resources

MetricsHost = Annotated[
    str, typer.Option(envvar="MESETA_METRICS_HOST", help="Address of /metrics, /health and /ready.")
]
MetricsPort = Annotated[
    int, typer.Option(envvar="MESETA_METRICS_PORT", help="Port of /metrics, /health and /ready; -1: none.")
]


@app.command()
def master(
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
    amqp_user: AmqpUser = None,
    credentials: CredentialsFile = DEFAULT_CREDENTIALS,
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
    launch_timeout: Annotated[
        float,
        typer.Option(
            envvar="MESETA_LAUNCH_TIMEOUT",
            help="Seconds a task may stay STAGING unlisted by its agent before it is LOST.",
        ),
    ] = default(MasterSettings, "launch_timeout"),
    unreachable_timeout: Annotated[
        float,
        typer.Option(
            envvar="MESETA_UNREACHABLE_TIMEOUT",
            help="Seconds partition-aware tasks on a silent agent stay UNREACHABLE before they are GONE.",
        ),
    ] = default(MasterSettings, "unreachable_timeout"),
    state_sync_interval: Annotated[
        float,
        typer.Option(
            envvar="MESETA_STATE_SYNC_INTERVAL",
            help="Seconds between whole views sent to the allocator (at least 2.5 ms per agent).",
        ),
    ] = default(MasterSettings, "state_sync_interval"),
    api_advertise: Annotated[
        str | None,
        typer.Option(
            envvar="MESETA_API_ADVERTISE",
            help="This master's API URL as operators reach it (a standby redirects them to the leader's).",
        ),
    ] = None,
    operator_token_file: Annotated[
        Path | None,
        typer.Option(
            envvar="MESETA_OPERATOR_TOKEN_FILE",
            help="File holding the operator credential the write endpoints need (none: they refuse all).",
        ),
    ] = None,
    acl: Annotated[
        Path | None,
        typer.Option(
            envvar="MESETA_ACL",
            help="JSON: the roles, max_weight and max_priority each framework principal may subscribe with.",
        ),
    ] = None,
    dev: Dev = False,
    log_level: LogLevel = "INFO",
    trace_exporter: TraceExporter = "none",
    otlp_endpoint: OtlpEndpoint = None,
) -> None:
    """Run a master."""
    from meseta.master.service import MasterService

    setup("master", log_level, trace_exporter, otlp_endpoint)
    settings = MasterSettings(
        login(amqp_url, amqp_user, credentials),
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
        dev=dev,
        acl_file=acl,
        launch_timeout=launch_timeout,
        unreachable_timeout=unreachable_timeout,
        state_sync_interval=state_sync_interval,
        api_advertise=api_advertise,
        operator_token=operator_token_file.read_text().strip() if operator_token_file else None,
    )
    settings = dataclasses.replace(settings, name=name) if name else settings
    serve(build("master", lambda: MasterService(settings)))


@app.command()
def allocator(
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
    amqp_user: AmqpUser = None,
    credentials: CredentialsFile = DEFAULT_CREDENTIALS,
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
    metrics_host: MetricsHost = "127.0.0.1",
    metrics_port: MetricsPort = -1,
    dev: Dev = False,
    log_level: LogLevel = "INFO",
    trace_exporter: TraceExporter = "none",
    otlp_endpoint: OtlpEndpoint = None,
) -> None:
    """Run an allocator."""
    from meseta.allocator.service import AllocatorService

    setup("allocator", log_level, trace_exporter, otlp_endpoint)
    minimum = Resources(cpus=min_offer_cpus, mem=min_offer_mem)
    settings = AllocatorSettings(
        login(amqp_url, amqp_user, credentials),
        policy=policy,
        etcd_endpoint=etcd_endpoint,
        etcd_prefix=etcd_prefix,
        min_offer=None if minimum.is_empty() else minimum,
        lease_ttl=lease_ttl,
        dev=dev,
        metrics_host=metrics_host,
        metrics_port=None if metrics_port < 0 else metrics_port,
    )
    settings = dataclasses.replace(settings, name=name) if name else settings
    serve(build("allocator", lambda: AllocatorService(settings)))


@app.command()
def agent(
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
    amqp_user: AmqpUser = None,
    credentials: CredentialsFile = DEFAULT_CREDENTIALS,
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
    pull_timeout: Annotated[
        float,
        typer.Option(
            envvar="MESETA_PULL_TIMEOUT", help="Seconds an image pull may take before the task errs."
        ),
    ] = default(AgentSettings, "pull_timeout"),
    registry_auth_file: Annotated[
        Path | None,
        typer.Option(
            envvar="MESETA_REGISTRY_AUTH_FILE",
            help='JSON {"registry host": {"username": ..., "password": ...}} for pulls without their own.',
        ),
    ] = None,
    work_dir: Annotated[
        Path,
        typer.Option(
            envvar="MESETA_WORK_DIR",
            help="Checkpoints (tasks, unacknowledged updates), under WORK_DIR/AGENT_ID: agents with "
            "different ids may share one.",
        ),
    ] = DEFAULT_WORK_DIR,
    allow_mount: Annotated[
        list[str] | None,
        typer.Option(
            help="A host path tasks may bind-mount read-only (PATH:rw: also read-write); repeatable. "
            "None by default."
        ),
    ] = None,
    pids_limit: Annotated[
        int, typer.Option(envvar="MESETA_PIDS_LIMIT", help="Processes a task's container may have.")
    ] = default(AgentSettings, "pids_limit"),
    task_user: Annotated[
        str | None,
        typer.Option(
            envvar="MESETA_TASK_USER",
            help="Numeric uid[:gid] tasks run as unless they name their own (default: the image's user).",
        ),
    ] = None,
    executor_amqp_url: Annotated[
        str | None,
        typer.Option(
            envvar="MESETA_EXECUTOR_AMQP_URL",
            help="The URL custom executors get (the <prefix>.executors.<agent id> user); never the agent's.",
        ),
    ] = None,
    executor_network: Annotated[
        str,
        typer.Option(
            envvar="MESETA_EXECUTOR_NETWORK",
            help="host (executors share the host's network) or bridge (their own; their URL must reach "
            "the broker from a container).",
        ),
    ] = default(AgentSettings, "executor_network"),
    max_unacknowledged: Annotated[
        int,
        typer.Option(
            envvar="MESETA_MAX_UNACKNOWLEDGED",
            help="Status updates a framework may leave unacknowledged here before its launches are refused.",
        ),
    ] = default(AgentSettings, "max_unacknowledged"),
    dev: Dev = False,
    log_level: LogLevel = "INFO",
    metrics_host: MetricsHost = "127.0.0.1",
    metrics_port: MetricsPort = -1,
    trace_exporter: TraceExporter = "none",
    otlp_endpoint: OtlpEndpoint = None,
) -> None:
    """Run an agent."""
    from meseta.agent.service import AgentService
    from meseta.agent.settings import default_agent_id

    setup("agent", log_level, trace_exporter, otlp_endpoint)
    resources = Resources(cpus=cpus, mem=mem, disk=disk, gpus=gpus, ports=parse_ports(ports))
    if amqp_user is not None and executor_amqp_url is None:
        # A provisioned agent's executors have a user of their own: <prefix>.executors.<agent id>.
        from meseta.sdk import wire

        if (identity := wire.identify(amqp_user)) is not None and identity.kind == "agent":
            executor_amqp_url = login("", identity.principals.executors(identity.name), credentials)
    settings = AgentSettings(
        amqp_url=login(amqp_url, amqp_user, credentials),
        resources=resources,
        attributes=parse_attributes(attribute or []),
        heartbeat_interval=heartbeat_interval,
        cluster=cluster,
        isolator=isolator,
        gpu_ids=None if gpu_ids is None else tuple(filter(None, gpu_ids.split(","))),
        container_retention=container_retention,
        kill_grace_seconds=kill_grace,
        pull_timeout=pull_timeout,
        registry_auth_file=registry_auth_file,
        work_dir=work_dir,
        allowed_mounts=tuple(allow_mount or ()),
        pids_limit=pids_limit,
        executor_amqp_url=executor_amqp_url,
        task_user=task_user,
        metrics_host=metrics_host,
        metrics_port=None if metrics_port < 0 else metrics_port,
        max_unacknowledged=max_unacknowledged,
        executor_network=executor_network,
        dev=dev,
        agent_id=agent_id or default_agent_id(),
        hostname=hostname or socket.gethostname(),
    )
    serve(build("agent", lambda: AgentService(settings)))


@app.command()
def gateway(
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
    amqp_user: AmqpUser = None,
    credentials: CredentialsFile = DEFAULT_CREDENTIALS,
    etcd_endpoint: EtcdEndpoint = defaults.ETCD_ENDPOINT,
    etcd_prefix: EtcdPrefix = defaults.ETCD_PREFIX,
    host: Annotated[str, typer.Option(envvar="MESETA_GATEWAY_HOST", help="Address to serve on.")] = default(
        GatewaySettings, "host"
    ),
    port: Annotated[
        int, typer.Option(envvar="MESETA_GATEWAY_PORT", help="Port; 0: any free one.")
    ] = DEFAULT_GATEWAY_PORT,
    advertise: Annotated[
        str | None,
        typer.Option(
            envvar="MESETA_GATEWAY_ADVERTISE",
            help="This gateway's URL as frameworks reach it (a standby sends them to the leader's).",
        ),
    ] = None,
    principals: Annotated[
        Path | None,
        typer.Option(
            envvar="MESETA_GATEWAY_PRINCIPALS",
            help="JSON: each Mesos principal's password, AMQP URL and role (docs/MESOS_API.md).",
        ),
    ] = None,
    default_image: Annotated[
        str, typer.Option(envvar="MESETA_GATEWAY_DEFAULT_IMAGE", help="Image of a task that names none.")
    ] = default(GatewaySettings, "default_image"),
    heartbeat_interval: Annotated[
        float, typer.Option(envvar="MESETA_GATEWAY_HEARTBEAT", help="Seconds between HEARTBEAT events.")
    ] = default(GatewaySettings, "heartbeat_interval"),
    name: Annotated[str | None, typer.Option(envvar="MESETA_GATEWAY_NAME", help="Candidate name.")] = None,
    lease_ttl: Annotated[
        int, typer.Option(envvar="MESETA_LEASE_TTL", help="Leader lease, seconds.")
    ] = defaults.LEASE_TTL,
    dev: Dev = False,
    log_level: LogLevel = "INFO",
    trace_exporter: TraceExporter = "none",
    otlp_endpoint: OtlpEndpoint = None,
) -> None:
    """Run a Mesos v1 scheduler API gateway (existing Mesos frameworks subscribe to it)."""
    from meseta.gateway.service import GatewayService

    setup("gateway", log_level, trace_exporter, otlp_endpoint)
    settings = GatewaySettings(
        amqp_url=login(amqp_url, amqp_user, credentials),
        etcd_endpoint=etcd_endpoint,
        etcd_prefix=etcd_prefix,
        host=host,
        port=port,
        advertise=advertise,
        principals_file=principals,
        credentials_file=credentials,
        dev=dev,
        default_image=default_image,
        heartbeat_interval=heartbeat_interval,
        lease_ttl=lease_ttl,
    )
    settings = dataclasses.replace(settings, name=name) if name else settings
    try:
        service = GatewayService(settings)
    except (ValueError, OSError) as exc:
        typer.echo(f"meseta gateway: {exc}", err=True)
        raise typer.Exit(2) from None
    serve(service)


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
