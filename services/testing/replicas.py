"""A RabbitMQ cluster and an etcd cluster of three nodes each, on this machine, for the replicated control
plane's tests and benchmark: Debian's own ``rabbitmq-server`` and ``etcd``, each node a process of its own
on ports of its own, its data in a directory of its own. Nodes can be killed (SIGKILL) and started again;
an etcd member can lose its data and rejoin, as an operator replaces a member whose disk died."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aetcd

from meseta.runtime.rabbitmq import Management
from meseta.testing.processes import free_port

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data: Path
    proc: asyncio.subprocess.Process | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


@dataclass
class EtcdCluster:
    """Three etcd members; ``endpoints`` names them all, comma-separated."""

    root: Path
    size: int = 3
    members: list[EtcdMember] = field(default_factory=list)

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def _initial(self) -> str:
        return ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)

    async def _launch(self, member: EtcdMember, state: str) -> None:
        log = (self.root / f"{member.name}.log").open("ab")
        member.proc = await asyncio.create_subprocess_exec(
            "etcd", "--name", member.name, "--data-dir", str(member.data),
            "--listen-client-urls", f"http://{member.endpoint}",
            "--advertise-client-urls", f"http://{member.endpoint}",
            "--listen-peer-urls", f"http://127.0.0.1:{member.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{member.peer_port}",
            "--initial-cluster", self._initial(), "--initial-cluster-state", state,
            "--initial-cluster-token", self.root.name,
            "--heartbeat-interval", "50", "--election-timeout", "500",
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for i in range(self.size):
            self.members.append(EtcdMember(f"m{i}", free_port(), free_port(), self.root / f"m{i}"))
        for member in self.members:
            await self._launch(member, "new")

    def kill(self, member: EtcdMember) -> None:
        if member.alive:
            assert member.proc is not None
            member.proc.kill()

    async def _client(self, avoid: EtcdMember | None = None) -> aetcd.Client:
        """A client of a member that answers (not ``avoid``)."""
        for member in self.members:
            if member is avoid or not member.alive:
                continue
            client = aetcd.Client("127.0.0.1", member.client_port, timeout=5)
            try:
                await client.status()
                return client
            except Exception:
                await client.close()
        raise RuntimeError("no etcd member answers")

    async def leader(self, timeout: float = 20) -> EtcdMember:
        """The member that leads the cluster's Raft group now (after an election, if one is under way)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                client = await self._client()
                try:
                    status = await client.status()
                finally:
                    await client.close()
                if status.leader is not None:
                    for member in self.members:
                        if member.name == status.leader.name and member.alive:
                            return member
            if time.monotonic() > deadline:
                raise RuntimeError("the etcd cluster has no leader")
            await asyncio.sleep(0.1)

    async def replace(self, member: EtcdMember) -> None:
        """Replace a member whose data is lost, as etcd's runtime reconfiguration guide says: kill it,
        remove it from the cluster, wipe its data, add it back as a new member and start it empty; it
        catches up from the leader's log or snapshot."""
        self.kill(member)
        if member.proc is not None:
            await member.proc.wait()
        client = await self._client(avoid=member)
        try:
            ids = [known.id async for known in client.members() if known.name == member.name]
            for member_id in ids:
                await _patiently(functools.partial(client.remove_member, member_id))
            await _patiently(lambda: client.add_member([f"http://127.0.0.1:{member.peer_port}"]))
        finally:
            await client.close()
        await asyncio.to_thread(shutil.rmtree, member.data, True)
        await self._launch(member, "existing")
        await self.wait_healthy(member)

    async def restart(self, member: EtcdMember) -> None:
        """Start a killed member again on its own data; return once it serves reads."""
        if member.proc is not None:
            await member.proc.wait()
        await self._launch(member, "existing")
        await self.wait_healthy(member)

    async def wait_healthy(self, member: EtcdMember, timeout: float = 30) -> None:
        """Wait until ``member`` serves a linearizable read: it has joined and caught up (until then, losing
        another member would leave the cluster without a quorum)."""
        deadline = time.monotonic() + timeout
        while True:
            client = aetcd.Client("127.0.0.1", member.client_port, timeout=2)
            try:
                await client.get(b"/health-probe")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
            finally:
                await client.close()

    async def stop(self) -> None:
        for member in self.members:
            self.kill(member)
            if member.proc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(member.proc.wait(), 10)


@asynccontextmanager
async def etcd_cluster(root: Path, size: int = 3) -> AsyncIterator[EtcdCluster]:
    """A cluster of ``size`` etcd members, stopped afterwards (its data under ``root``)."""
    cluster = EtcdCluster(root, size)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()


@dataclass
class RabbitNode:
    """One RabbitMQ node: its Erlang node name, its AMQP, management and distribution ports."""

    name: str
    amqp_port: int
    management_port: int
    dist_port: int
    home: Path
    proc: asyncio.subprocess.Process | None = None
    killed: bool = False
    """Killed and not started again (its process may not have been reaped yet)."""

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.amqp_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and not self.killed

    def management(self) -> Management:
        """This node's own management API."""
        return Management(f"http://127.0.0.1:{self.management_port}/api")


@dataclass
class RabbitCluster:
    """RabbitMQ nodes clustered at boot by classic peer discovery (every node lists every other: no
    ``rabbitmqctl join_cluster``, which needs a node stopped and started again). ``hosts`` names them all,
    comma-separated, for :class:`~meseta.testing.processes.ProcessCluster`'s ``amqp_host``."""

    root: Path
    size: int = 3
    nodes: list[RabbitNode] = field(default_factory=list)
    # Erlang node names are global to the machine (epmd): a token keeps concurrent clusters apart.
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    @property
    def hosts(self) -> str:
        return ",".join(node.host for node in self.nodes)

    def management(self) -> Management:
        """The management API of a node that is up (any node answers for the whole cluster)."""
        for node in self.nodes:
            if node.alive:
                return node.management()
        raise RuntimeError("no RabbitMQ node is up")

    def _configure(self, node: RabbitNode) -> None:
        node.home.mkdir(parents=True, exist_ok=True)
        peers = "\n".join(
            f"cluster_formation.classic_config.nodes.{i + 1} = {peer.node}"
            for i, peer in enumerate(self.nodes)
        )
        (node.home / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {node.amqp_port}\n"
            f"management.tcp.port = {node.management_port}\n"
            "management_agent.disable_metrics_collector = true\n"
            "loopback_users = none\n"
            "cluster_formation.peer_discovery_backend = classic_config\n"
            f"{peers}\n"
        )
        (node.home / "enabled_plugins").write_text("[rabbitmq_management].\n")
        cookie = node.home / ".erlang.cookie"  # one cookie for every node, or they cannot talk
        if not cookie.exists():
            cookie.write_text(f"meseta{self.token}cookie")
            cookie.chmod(0o400)

    async def _launch(self, node: RabbitNode) -> None:
        env = {
            **os.environ,
            "HOME": str(node.home),
            "RABBITMQ_NODENAME": node.node,
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(node.home / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.home / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(node.home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.home / "log"),
            "RABBITMQ_CONF_ENV_FILE": str(node.home / "rabbitmq-env.conf"),
        }
        node.killed = False
        log = (node.home / "out.log").open("ab")
        # stdin from /dev/null: with a terminal or pipe there, the script starts an Erlang shell instead.
        node.proc = await asyncio.create_subprocess_exec(
            RABBITMQ_SERVER,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # the script runs Erlang as its child: kill() kills the group
        )
        log.close()

    async def start(self, timeout: float = 120) -> None:
        """Start every node and wait until the management API lists them all running, clustered."""
        for i in range(self.size):
            self.nodes.append(
                RabbitNode(
                    f"meseta{self.token}r{i}", free_port(), free_port(), free_port(), self.root / f"r{i}"
                )
            )
        for node in self.nodes:
            await asyncio.to_thread(self._configure, node)
            await self._launch(node)
        await self.wait_running(self.nodes, timeout)

    async def wait_running(self, nodes: list[RabbitNode], timeout: float = 120) -> None:
        """Wait until each of ``nodes`` answers on its own management API and lists all of them running
        (the others' view of a node just killed still says running for a while)."""
        names = {node.node for node in nodes}
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(lambda: all(names <= self._running(node) for node in nodes)):
            for node in nodes:
                if node.proc is not None and node.proc.returncode is not None:
                    raise RuntimeError(f"RabbitMQ node {node.node} exited; see {node.home / 'out.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ nodes {sorted(names)} not running after {timeout} s")
            await asyncio.sleep(0.5)

    @staticmethod
    def _running(node: RabbitNode) -> set[str]:
        """The nodes ``node`` sees running (none while it does not answer)."""
        try:
            listed = json.loads(node.management().call("GET", "/nodes"))
        except Exception:
            return set()
        return {str(n["name"]) for n in listed if n.get("running")}

    def leaders(self, vhost: str) -> Counter[str]:
        """Queues on ``vhost`` by the node that leads them (a quorum queue's Raft leader, or a classic
        queue's only node)."""
        queues = json.loads(self.management().call("GET", f"/queues/{quote(vhost, safe='')}"))
        return Counter(str(q.get("leader") or q.get("node")) for q in queues)

    def kill(self, node: RabbitNode) -> None:
        """SIGKILL the node: its Erlang VM with the script that started it (one process group)."""
        if node.alive:
            assert node.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, signal.SIGKILL)
            node.killed = True

    async def restart(self, node: RabbitNode) -> None:
        """Start a killed node again, on its own data: it rejoins the cluster."""
        if node.proc is not None:
            await node.proc.wait()
        await self._launch(node)
        await self.wait_running([node])

    async def stop(self) -> None:
        for node in self.nodes:
            self.kill(node)
            if node.proc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(node.proc.wait(), 15)


@asynccontextmanager
async def rabbit_cluster(root: Path, size: int = 3) -> AsyncIterator[RabbitCluster]:
    """A RabbitMQ cluster of ``size`` nodes, killed afterwards (its data under ``root``)."""
    cluster = RabbitCluster(root, size)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()


async def _patiently(change: Callable[[], Awaitable[object]], timeout: float = 30) -> None:
    """A change of membership, tried again for up to ``timeout`` s: etcd refuses one until its members
    have been connected for a while after the last ("unhealthy cluster"), or times out while a new
    member catches up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await change()
            return
        except (aetcd.exceptions.ConnectionFailedError, aetcd.exceptions.ConnectionTimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
