"""An in-process cluster on the real broker, etcd and dockerd: master, allocator and agents as services,
and what a test framework does with it."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika

from meseta.agent import AgentService, AgentSettings
from meseta.allocator import AllocatorService, AllocatorSettings
from meseta.master import MasterService, MasterSettings
from meseta.ops.users import Credentials, provision, remove_users
from meseta.runtime.defaults import ETCD_ENDPOINT as ETCD
from meseta.runtime.defaults import TASK_IMAGE
from meseta.runtime.rabbitmq import Management
from meseta.sdk import FrameworkClient, wire
from meseta.sdk.helpers import first_fit
from meseta.testing.processes import free_port, remove_containers

AGENT_RESOURCES = wire.Resources(cpus=2, mem=1024, disk=4096, ports=(wire.PortRange(begin=31000, end=31099),))


@dataclass
class Cluster:
    """Handles on a running test cluster."""

    name: str
    amqp_url: str
    master: MasterService
    allocator: AllocatorService
    agents: list[AgentService]
    frameworks: list[FrameworkClient] = field(default_factory=list)
    credentials: Credentials | None = None
    """The cluster's principals where it was started with them (``principals=``); None: development."""

    def url(self, user: str) -> str:
        """The AMQP URL of one of the cluster's users (the test's own URL in development mode)."""
        return self.amqp_url if self.credentials is None else self.credentials.url(user)

    @property
    def principals(self) -> wire.Principals:
        assert self.credentials is not None, "a development cluster has no principals"
        return self.credentials.principals

    async def restart_master_and_allocator(self) -> None:
        """Stop both, then start fresh ones with the same settings (nothing soft survives)."""
        await self.master.stop()
        await self.allocator.stop()
        self.allocator = AllocatorService(self.allocator.settings)
        self.master = MasterService(self.master.settings)
        await self.allocator.start()
        await self.master.start()

    async def framework(self, name: str, principal: str | None = None, **kwargs: Any) -> FrameworkClient:
        """A subscribed framework client, closed with the cluster; with principals, it logs in as
        ``principal`` (by default the first one the cluster was given)."""
        url = self.amqp_url
        if self.credentials is not None:
            found = (self.principals.framework_principal(u) for u in self.credentials.passwords)
            chosen = principal or next(name for name in found if name is not None)
            url = self.url(self.principals.framework(chosen))
        client = FrameworkClient(url, name, **kwargs)
        await client.subscribe()
        self.frameworks.append(client)
        return client


@asynccontextmanager
async def local_cluster(
    amqp_url: str,
    etcd_prefix: str,
    agents: int = 3,
    resources: wire.Resources = AGENT_RESOURCES,
    container_retention: float = 600.0,
    isolator: str = "docker",
    gpu_ids: list[tuple[str, ...]] | None = None,
    offer_timeout: float = 30.0,
    agent_resources: list[wire.Resources] | None = None,
    revocation_grace: float = 5.0,
    agent_timeout: float = 5.0,
    heartbeat_rate: float = 0.0,
    allowed_mounts: tuple[str, ...] = (),
    task_user: str | None = None,
    executor_network: str = "host",
    executor_host: str | None = None,
    principals: Iterable[str] | None = None,
    acl: Mapping[str, Mapping[str, object]] | None = None,
    max_unacknowledged: int = 10_000,
    etcd_endpoint: str = ETCD,
    launch_timeout: float = 30.0,
    queue_type: str | None = None,
    batch_window: float = AllocatorSettings.batch_window,
    operator_token: str | None = None,
    pull_timeout: float = 600.0,
    registry_auth_file: Path | None = None,
) -> AsyncIterator[Cluster]:
    """Start allocator, master and agents; stop them and remove their containers afterwards.

    With ``principals`` (framework principal names) the cluster runs as it would in production: every
    service and framework logs in as its own provisioned user (deleted afterwards), ``acl`` says what
    each framework principal may subscribe as. Without, it is a development cluster on ``guest``.
    """
    hex_id = uuid.uuid4().hex[:10]
    name = f"test-{hex_id}"
    if agent_resources is None and resources is AGENT_RESOURCES:
        # Ports of each agent's own, free on this host now: tasks publish their ports on the host, and
        # agents of parallel tests (or of one cluster) offering the same numbers would collide there.
        # Validated (not model_copy'd): Resources joins adjacent ports into one range, as the master shows.
        agent_resources = [
            wire.Resources.model_validate({**dict(resources), "ports": _free_ports(4)}) for _ in range(agents)
        ]
    per_agent = agent_resources or [resources] * agents
    agent_ids = [f"{name}-agent-{i}" for i in range(len(per_agent))]
    p = wire.Principals(f"t{hex_id}")
    credentials = None
    acl_file = None
    dev = principals is None
    if principals is not None:
        parts = urlsplit(amqp_url)
        vhost = unquote(parts.path.lstrip("/")) or "/"
        host = parts.hostname or "127.0.0.1"
        credentials = await asyncio.to_thread(
            provision,
            Management(),
            vhost,
            p,
            agents=agent_ids,
            frameworks=list(principals),
            host=f"{host}:{parts.port or 5672}",
        )
        if acl is not None:
            acl_file = Path(tempfile.gettempdir()) / f"meseta-acl-{hex_id}.json"
            acl_file.write_text(json.dumps(dict(acl)))

    def url(user: str) -> str:
        return amqp_url if credentials is None else credentials.url(user)

    allocator = AllocatorService(
        AllocatorSettings(
            url(p.allocator),
            etcd_endpoint=etcd_endpoint,
            etcd_prefix=etcd_prefix,
            tick_interval=0.2,
            batch_window=batch_window,
            dev=dev,
            queue_type=queue_type,
            metrics_port=0,
        )
    )
    master = MasterService(
        MasterSettings(
            url(p.master),
            etcd_endpoint,
            etcd_prefix,
            dev=dev,
            acl_file=acl_file,
            launch_timeout=launch_timeout,
            queue_type=queue_type,
            offer_timeout=offer_timeout,
            sweep_interval=0.1,
            revocation_grace=revocation_grace,
            agent_timeout=agent_timeout,
            heartbeat_rate=heartbeat_rate,
            framework_timeout=3.0,  # the failover tests wait for a disconnection
            api_port=0,
            operator_token=operator_token,
            sample_interval=0.2,
        )
    )
    agent_services = [
        AgentService(
            AgentSettings(
                amqp_url=url(p.agent(agent_ids[i])),
                executor_amqp_url=None if dev else _reach(url(p.executors(agent_ids[i])), executor_host),
                executor_network=executor_network,
                dev=dev,
                max_unacknowledged=max_unacknowledged,
                resources=per_agent[i],
                agent_id=agent_ids[i],
                hostname=f"host-{i}",
                attributes={"rack": f"r{i % 2}"},
                heartbeat_interval=0.5,
                metrics_port=0,
                cluster=name,
                container_retention=container_retention,
                isolator=isolator,
                gpu_ids=gpu_ids[i] if gpu_ids else (),
                kill_grace_seconds=1,
                work_dir=Path(tempfile.gettempdir()) / "meseta-test-agents" / name,
                status_retry_interval=1.0,
                allowed_mounts=allowed_mounts,
                task_user=task_user,
                pull_timeout=pull_timeout,
                registry_auth_file=registry_auth_file,
            )
        )
        for i in range(len(per_agent))
    ]
    cluster = Cluster(name, amqp_url, master, allocator, agent_services, credentials=credentials)
    try:
        await allocator.start()
        await master.start()
        for agent in agent_services:
            await agent.start()
        yield cluster
    finally:
        for client in cluster.frameworks:
            await client.close()
        for service in (*agent_services, cluster.master, cluster.allocator):
            await service.stop()
        await asyncio.to_thread(remove_containers, name)
        if credentials is not None:
            await asyncio.to_thread(remove_users, Management(), credentials.passwords)
        if acl_file is not None:
            acl_file.unlink(missing_ok=True)


def _reach(url: str, host: str | None) -> str:
    """``url`` through ``host`` instead of its own (an executor on a network of its own reaches the
    broker at the Docker bridge's gateway, not at 127.0.0.1)."""
    if host is None:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{netloc[0]}@{host}:{parts.port or 5672}").geturl()


def _free_ports(count: int) -> tuple[wire.PortRange, ...]:
    return tuple(wire.PortRange(begin=p, end=p) for p in sorted({free_port() for _ in range(count)}))


def short_task(
    task_id: str, cpus: float = 0.5, mem: float = 32, script: str = "echo hello from $HOSTNAME"
) -> wire.TaskInfo:
    """A quick task on the busybox image."""
    return wire.TaskInfo(
        task_id=task_id,
        name=task_id,
        resources=wire.Resources(cpus=cpus, mem=mem),
        container=wire.ContainerSpec.shell(TASK_IMAGE, script),
    )


@dataclass
class BatchRun:
    """What a batch framework saw."""

    final: dict[str, wire.TaskStatus] = field(default_factory=dict)
    offers: list[wire.Offer] = field(default_factory=list)

    def states(self) -> Counter[str]:
        return Counter(s.state.value for s in self.final.values())


async def run_batch(client: FrameworkClient, tasks: Iterable[wire.TaskInfo]) -> BatchRun:
    """Launch every task with first-fit packing; return when all reached a terminal state."""
    pending = list(tasks)
    wanted = {t.task_id for t in pending}
    run = BatchRun()
    async for event in client.events():
        match event:
            case wire.Offers():
                for offer in event.offers:
                    run.offers.append(offer)
                    chosen = first_fit(offer, pending)
                    if chosen:
                        pending = [t for t in pending if t not in chosen]
                        await client.accept([offer.offer_id], chosen)
                    else:
                        await client.decline([offer.offer_id], refuse_seconds=1)
            case wire.Update() if event.status.state.terminal:
                run.final[event.status.task_id] = event.status
                if wanted <= run.final.keys():
                    return run
    return run


# Keyed by the client itself, weakly: an id() is reused once its client is collected, and a later
# test's client then inherited an earlier test's unread offers.
_BACKLOG: weakref.WeakKeyDictionary[FrameworkClient, list[Any]] = weakref.WeakKeyDictionary()


async def next_event(client: FrameworkClient, kind: type[wire.Message], timeout: float = 20.0) -> Any:
    """The next event of ``kind`` on the client's stream; events of other kinds wait for their own call.

    The timeout only bounds a failure: under CI's parallel load a container start took over 10 s once.
    """
    backlog = _BACKLOG.setdefault(client, [])
    for i, event in enumerate(backlog):
        if isinstance(event, kind):
            return backlog.pop(i)

    async def find() -> Any:
        async for event in client.events():
            if isinstance(event, kind):
                return event
            backlog.append(event)
        raise AssertionError("the client closed")

    return await asyncio.wait_for(find(), timeout)


async def terminal(client: FrameworkClient, task_id: str, timeout: float = 30) -> wire.TaskStatus:
    """The terminal status of ``task_id``."""
    while True:
        update = await next_event(client, wire.Update, timeout)
        if update.status.task_id == task_id and update.status.state.terminal:
            return update.status  # type: ignore[no-any-return]


async def run_one(client: FrameworkClient, task: wire.TaskInfo) -> wire.TaskStatus:
    """Launch ``task`` on the next offer and return its terminal status."""
    offer = (await next_event(client, wire.Offers)).offers[0]
    await client.accept([offer.offer_id], [task])
    return await terminal(client, task.task_id)


async def until_state(
    runner: FrameworkClient, state: wire.TaskState, task: wire.TaskInfo | None = None
) -> Any:
    """Launch ``task`` on the first offer (if given), decline every other offer for a minute, and
    return the ``(agent id, status)`` of the first update in ``state``."""
    agent_id = ""
    async with asyncio.timeout(30):
        async for event in runner.events():
            if isinstance(event, wire.Offers):
                for offer in event.offers:
                    if task is not None and not agent_id:
                        agent_id = offer.agent_id
                        await runner.accept([offer.offer_id], [task])
                    else:
                        await runner.decline([offer.offer_id], refuse_seconds=60)
            elif isinstance(event, wire.Update) and event.status.state == state:
                return agent_id, event.status
    raise AssertionError("the client closed")


async def dead_letters(
    amqp_url: str, count: int, timeout: float = 15.0
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Read ``count`` messages off the dead-letter queue."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.get_queue(wire.Queue.DEAD_LETTER)
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        message = await queue.get(fail=False, no_ack=True)
        if message is None:
            await asyncio.sleep(0.05)
        else:
            got.append(message)
    await connection.close()
    return got
