"""``meseta up | demo | example | task-image``: clusters and frameworks on this host."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from meseta.agent.settings import AgentSettings
from meseta.cli.common import (
    DEFAULT_AMQP_URL,
    DEFAULT_CREDENTIALS,
    AmqpUrl,
    AmqpUser,
    CredentialsFile,
    EtcdEndpoint,
    EtcdPrefix,
    OtlpEndpoint,
    TraceExporter,
    app,
    default,
    login,
)
from meseta.master.settings import DEFAULT_API_PORT
from meseta.runtime import defaults
from meseta.sdk import eventloop, tracing


@app.command()
def example(
    name: Annotated[str, typer.Argument(help="batch, gang or service.")],
    amqp_url: AmqpUrl = DEFAULT_AMQP_URL,
    amqp_user: AmqpUser = None,
    credentials: CredentialsFile = DEFAULT_CREDENTIALS,
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
    url = login(amqp_url, amqp_user, credentials)
    summary = eventloop.run(run_example(name, url, hosts.split(","), size, delay, timeout, hold))
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
    ] = Path(defaults.UP_DIR),
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
