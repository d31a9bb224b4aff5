"""``meseta up``: a cluster to develop against, on this host, until Ctrl-C.

One master (state API on ``--api-port``), one allocator and ``--agents`` agents, each a ``meseta`` process
writing its log under the cluster's directory, on the RabbitMQ vhost and etcd prefix given (by default
the ones every other ``meseta`` command and the SDK use, so a framework needs no settings). Unlike
``meseta demo`` it runs no framework and stays up: stopping it (SIGINT or SIGTERM) stops its processes
and removes its containers. It checks the broker, etcd and Docker first and says which is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import aio_pika
import docker

from meseta.ops.state_client import NoLeader, fetch_state
from meseta.ops.task_image import TaskImageError, ensure_task_image
from meseta.runtime import defaults
from meseta.runtime.etcd import EtcdStore
from meseta.testing.processes import ProcessCluster, remove_containers

PORTS_PER_AGENT = 1000
"""Each agent offers its own host ports (21000-21999, 22000-22999, ...): agents that share a host must
not offer the same port to two tasks."""
FIRST_PORT = 21000
"""Below the kernel's ephemeral range (32768 on): a port there may be taken by any outgoing connection
on the host by the time a task publishes it."""


class NotReady(RuntimeError):
    """Something the cluster needs is missing or did not come up; the message says what to do."""


@dataclass
class DevCluster(ProcessCluster):
    """A :class:`ProcessCluster` on a fixed vhost and etcd prefix, which it neither creates nor deletes."""

    url: str = ""
    prefix: str = "/meseta"

    @property
    def amqp_url(self) -> str:
        return self.url

    @property
    def etcd_prefix(self) -> str:
        return self.prefix

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.log_dir.mkdir, parents=True, exist_ok=True)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_all()
        await asyncio.to_thread(remove_containers, self.run_id)


@dataclass(frozen=True)
class UpSettings:
    """What ``meseta up`` starts."""

    amqp_url: str
    etcd_endpoint: str
    etcd_prefix: str
    agents: int
    cpus: float
    mem: float
    api_port: int
    isolator: str
    image: str
    directory: Path
    """Logs, and the agents' work directories."""
    cluster: str
    """Label on this cluster's containers, and the agents' id prefix."""
    ready_timeout: float = 60.0
    extra_env: dict[str, str] = field(default_factory=dict)


async def preflight(settings: UpSettings) -> None:
    """Fail with what to do when the broker, etcd or Docker does not answer; build the task image."""
    try:
        connection = await asyncio.wait_for(aio_pika.connect(settings.amqp_url), 10)
        await connection.close()
    except Exception as exc:
        raise NotReady(
            f"RabbitMQ does not answer at {settings.amqp_url} ({exc!r}): install and start it "
            "(apt-get install rabbitmq-server; rabbitmq-server -detached), or pass --amqp-url"
        ) from None
    store = EtcdStore(settings.etcd_endpoint, settings.etcd_prefix)
    try:
        await asyncio.wait_for(store.connect(), 10)
        await asyncio.wait_for(store.get_json("probe"), 10)
    except Exception as exc:
        raise NotReady(
            f"etcd does not answer at {settings.etcd_endpoint} ({exc!r}): install and start it "
            "(apt-get install etcd-server; etcd &), or pass --etcd-endpoint"
        ) from None
    finally:
        with contextlib.suppress(Exception):
            await store.close()
    if settings.isolator != "docker":
        return
    try:
        await asyncio.to_thread(_ping_docker)
        built = await asyncio.to_thread(ensure_task_image, settings.image)
    except TaskImageError as exc:
        raise NotReady(str(exc)) from None
    except docker.errors.DockerException as exc:
        raise NotReady(
            f"no Docker engine answers ({exc}): install and start it (apt-get install docker.io; "
            "dockerd &), or pass --isolator process"
        ) from None
    if built:
        print(f"built the task image {settings.image} from busybox-static", flush=True)


def _ping_docker() -> None:
    client = docker.from_env()
    try:
        client.ping()
    finally:
        client.close()


async def start(cluster: DevCluster, settings: UpSettings) -> None:
    """The processes: allocator, master, agents (each agent its own ports and work directory)."""
    await cluster.allocator(0)
    await cluster.start(
        "master-0",
        "master",
        "--name=master-0",
        f"--api-port={settings.api_port}",
        f"--operator-token-file={settings.directory / defaults.OPERATOR_TOKEN_NAME}",
    )
    for i in range(settings.agents):
        first = FIRST_PORT + i * PORTS_PER_AGENT
        await cluster.agent(
            i,
            f"host-{i}",
            f"--cpus={settings.cpus:g}",
            f"--mem={settings.mem:g}",
            f"--ports={first}-{first + PORTS_PER_AGENT - 1}",
            f"--isolator={settings.isolator}",
        )


async def wait_ready(cluster: DevCluster, settings: UpSettings) -> None:
    """Until the leading master lists every agent; NotReady with the processes' last words otherwise."""
    api = [f"http://127.0.0.1:{settings.api_port}"]
    deadline = asyncio.get_running_loop().time() + settings.ready_timeout
    while asyncio.get_running_loop().time() < deadline:
        for name, proc in cluster.procs.items():
            if proc.returncode is not None:
                raise NotReady(f"{name} exited ({proc.returncode}):\n{_tail(cluster.log(name))}")
        with contextlib.suppress(NoLeader):
            state = await asyncio.to_thread(fetch_state, api, 2.0)
            if len(state.agents) >= settings.agents:
                return
        await asyncio.sleep(0.5)
    logs = "\n".join(f"--- {name}\n{_tail(cluster.log(name))}" for name in cluster.procs)
    raise NotReady(f"the cluster did not come up within {settings.ready_timeout:.0f} s:\n{logs}")


def write_operator_token(directory: Path) -> Path:
    """A fresh credential for this run's operator API, readable by this user only."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / defaults.OPERATOR_TOKEN_NAME
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
    return path


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


async def up(settings: UpSettings, stop: asyncio.Event, say: Callable[[str], None] = print) -> None:
    """Check, start, wait until ready, say how to use it, then run until ``stop`` is set."""
    await preflight(settings)
    work = settings.directory
    await asyncio.to_thread(shutil.rmtree, work / "agents", True)  # no checkpoints of an earlier run
    token = await asyncio.to_thread(write_operator_token, work)
    env = {"MESETA_TASK_IMAGE": settings.image, **settings.extra_env}
    async with DevCluster(
        log_dir=work,
        run_id=settings.cluster,
        etcd_endpoint=settings.etcd_endpoint,
        env=env,
        url=settings.amqp_url,
        prefix=settings.etcd_prefix,
    ) as cluster:
        await start(cluster, settings)
        await wait_ready(cluster, settings)
        say(
            f"meseta is up: {settings.agents} agents of {settings.cpus:g} cpus and {settings.mem:g} MiB\n"
            f"  frameworks connect to  {settings.amqp_url}  (MESETA_AMQP_URL)\n"
            f"  state API and web page http://127.0.0.1:{settings.api_port}/  (meseta status)\n"
            f"  task image             {settings.image}\n"
            f"  operator credential    {token}  (meseta drain, kill, policy, role read it)\n"
            f"  logs                   {work}/*.log\n"
            "Ctrl-C stops the cluster and removes its containers."
        )
        await stop.wait()
        say("stopping")
